"""The families' shared interface: building by name, predictor-file round trips, refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from survopt_hydra.survival import make_competing_risks
from survopt_hydra.survival.families import FAMILIES, family_from_dict, make_family, select


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_fitted_family_survives_json_and_predicts_the_same(name):
    cohort = make_competing_risks(200, seed=3, causes=2)
    risks = 2 if name == "deephit" else 1
    events = cohort.events if risks == 2 else (cohort.events > 0).astype(np.int64)
    family = make_family(name, **({"risks": 2} if risks == 2 else {})).fit(cohort.durations, events)
    torch.manual_seed(0)
    net = torch.nn.Linear(cohort.x.shape[1] + int(family.time_input), family.n_outputs)
    x = torch.tensor(cohort.x)
    family = family.fit_baseline(net, x, cohort.durations, events)
    again = family_from_dict(json.loads(json.dumps(family.to_dict())))
    assert again == family and type(again) is type(family)
    times = np.quantile(cohort.durations, [0.0, 0.25, 0.5, 1.0])
    out = family.predict(net, x[:5])
    assert torch.equal(again.survival(again.predict(net, x[:5]), times), family.survival(out, times))
    cif = family.cif(out, times)
    assert cif.shape == (5, risks, 4)
    assert torch.allclose(cif.sum(1) + family.survival(out, times), torch.ones(5, 4, dtype=torch.float64),
                          atol=1e-12)


def test_select_takes_the_same_rows_of_every_entry():
    target = {"a": torch.arange(5), "b": torch.arange(5) * 10}
    assert {k: v.tolist() for k, v in select(target, torch.tensor([4, 1])).items()} == {"a": [4, 1], "b": [40, 10]}


@pytest.mark.parametrize("bad,match", [
    ({"family": "mtlr"}, "unknown 'mtlr'"),
    ({"family": "pmf", "n_bins": 3}, "unknown option"),
    ({"family": "pmf", "name": "x"}, "unknown option"),
    ({"family": "pmf", "cuts": ["0", "1"]}, "list of numbers"),
    ({"family": "pmf", "cuts": [0.0, 2.0, 1.0]}, "increasing"),
    ({"family": "pmf", "cuts": [1.0, 2.0]}, "starting at 0"),
    ({"family": "pmf", "n_cuts": 2, "cuts": [0.0, 1.0, 2.0]}, "2..n_cuts"),
    ({"family": "cox_time", "time_scale": 0.0, "time_loc": 0.0}, "time_scale"),
    ({"family": "cox_time", "base_times": [1.0]}, "come together"),
    ({"family": "deephit", "alpha": {"x": 1}}, "must be a number"),
    ([1, 2], "mapping"),
])
def test_a_bad_predictor_entry_is_a_one_line_error(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        family_from_dict(bad)
    assert "\n" not in str(info.value)


def test_labels_are_checked_once_per_data_set():
    family = make_family("logistic_hazard", n_cuts=3)
    for durations, events, match in (([1.0, float("nan")], [1, 0], "finite"), ([-1.0, 2.0], [1, 0], ">= 0"),
                                     ([1.0, 2.0], [1, 0.5], "events must be"), ([1.0], [1, 0], "differ in length")):
        with pytest.raises(ValueError, match=match):
            family.fit(durations, events)
