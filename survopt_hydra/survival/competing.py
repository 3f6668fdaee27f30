"""A synthetic competing-risks cohort whose true cumulative incidence functions are known exactly.

Each cause k has the cause-specific hazard lambda_k(t | x) = rho t^(rho - 1) c_k(x), with
c_k(x) = base_k exp(x . coef_k) and one Weibull shape rho shared by the causes. Then the
all-cause cumulative hazard is C(x) t^rho with C = sum_k c_k, the event time is
T = (E / C)^(1/rho) with E ~ Exp(1), the cause is k with probability c_k / C
(independent of T), and

    CIF_k(t | x) = c_k(x) / C(x) * (1 - exp(-C(x) t^rho)),   S(t | x) = exp(-C(x) t^rho)

(Beyersmann, Allignol & Schumacher, "Competing Risks and Multistate Models with R", 2012,
Sec. 3.2: simulating from cause-specific hazards). The causes depend on different
features (by default cause 1 on x0 and x1, cause 2 on x2 and against x1), so the CIF
curves of two rows cross and the ranking differs by cause. Censoring is independent and
exponential, its rate set so that ``censoring`` of the rows are censored in expectation
(given the drawn event times). ``causes=1`` gives a single-risk Weibull cohort.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: default log-hazard coefficients of causes 1 and 2 over 5 features (x3, x4 are noise)
DEFAULT_COEF = ((0.9, 0.6, 0.0, 0.0, 0.0), (0.0, -0.7, 0.9, 0.0, 0.0))
DEFAULT_BASE = (0.10, 0.06)


@dataclass(frozen=True)
class CompetingRisksCohort:
    """Rows (float32 features, float32 durations, int64 event codes 0..K) and the true model."""

    x: np.ndarray
    durations: np.ndarray
    events: np.ndarray
    coef: np.ndarray  # (K, p)
    base: np.ndarray  # (K,)
    shape: float

    def rates(self, x: np.ndarray) -> np.ndarray:
        """(n, K) c_k(x)."""
        return self.base[None, :] * np.exp(np.asarray(x, dtype=np.float64) @ self.coef.T)

    def true_cif(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(n, K, len(times)) CIF_k(t | x)."""
        c = self.rates(x)
        total = c.sum(1, keepdims=True)
        t = np.clip(np.asarray(times, dtype=np.float64).reshape(-1), 0.0, None) ** self.shape
        return (c / total)[:, :, None] * (1.0 - np.exp(-total[:, :, None] * t[None, None, :]))

    def true_survival(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(n, len(times)) S(t | x)."""
        t = np.clip(np.asarray(times, dtype=np.float64).reshape(-1), 0.0, None) ** self.shape
        return np.exp(-self.rates(x).sum(1, keepdims=True) * t[None, :])


def make_competing_risks(n: int, seed: int = 0, causes: int = 2, features: int = 5, censoring: float = 0.3,
                         shape: float = 1.5) -> CompetingRisksCohort:
    """Draw ``n`` rows with standard-normal features (see the module docstring for the truth).

    ``causes`` and ``features`` beyond the defaults get coefficients drawn from N(0, 0.5^2)
    with the same seed; ``censoring`` in [0, 1) is the expected censored share."""
    if n < 1 or causes < 1 or features < 1 or not 0.0 <= censoring < 1.0 or shape <= 0:
        raise ValueError(f"make_competing_risks: need n, causes, features >= 1, 0 <= censoring < 1 and shape > 0; "
                         f"got n={n}, causes={causes}, features={features}, censoring={censoring}, shape={shape}")
    rng = np.random.default_rng(seed)
    coef = rng.normal(0.0, 0.5, (causes, features))
    base = np.full(causes, 0.08)
    for k in range(min(causes, len(DEFAULT_COEF))):
        m = min(features, len(DEFAULT_COEF[k]))
        coef[k, :m] = DEFAULT_COEF[k][:m]
        coef[k, m:] = 0.0
        base[k] = DEFAULT_BASE[k]
    x = rng.standard_normal((n, features))
    cohort = CompetingRisksCohort(x.astype(np.float32), np.empty(0), np.empty(0), coef, base, float(shape))
    c = cohort.rates(x.astype(np.float32))
    total = c.sum(1)
    event_time = (rng.exponential(1.0, n) / total) ** (1.0 / shape)
    u = rng.random(n)[:, None]
    cause = 1 + (u > np.cumsum(c / total[:, None], 1)).sum(1)
    cause = np.minimum(cause, causes)  # guards the last bin against rounding in the cumulative sum
    if censoring > 0:
        lo, hi = 1e-9, 1e9  # rate r with mean(1 - exp(-r T_i)) = censoring
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if np.mean(1.0 - np.exp(-mid * event_time)) < censoring else (lo, mid)
        censor_time = rng.exponential(1.0 / math.sqrt(lo * hi), n)
    else:
        censor_time = np.full(n, np.inf)
    durations = np.minimum(event_time, censor_time)
    events = np.where(event_time <= censor_time, cause, 0).astype(np.int64)
    return CompetingRisksCohort(x.astype(np.float32), durations.astype(np.float32), events, coef, base, float(shape))
