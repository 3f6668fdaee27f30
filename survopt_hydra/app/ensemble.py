"""Several finished runs as one model: a folder that ``survopt-predict`` loads exactly like a run dir.

Why: ``survopt-tune`` ends with bags of run dirs (each seed's K fold models, and the bag of all), and
its test figures are the bags'. A user should predict with the bag the figure belongs to, in one
command, and get its survival curves too - not average 15 outputs by hand.

Layout (format ``survopt-ensemble/1``), everything inside the folder::

    <ensemble>/ensemble.json                    members, and how their predictions combine
    <ensemble>/members/<name>/predictor.json    each member's own files, copied from its run dir
    <ensemble>/members/<name>/best.pt

``ensemble.json`` names each member by a plain folder name (no path: an artifact never points outside
its folder) with a ``shift`` and ``scale``. For a new row x with member risks r_k(x) (log-hazards):

* ``risk(x) = mean_k (r_k(x) - shift_k) / scale_k``. ``survopt-tune`` writes each member's validation
  mean and sd there, so the ensemble's risk is the score its bag figures were computed from (the
  log-hazards of separate fits differ by shift and scale; averaging them raw would let one member
  dominate). It ranks patients; it is not itself a log-hazard.
* ``S(t | x) = mean_k S_k(t | x)``, each member's survival curve from its own Breslow baseline (or its
  family's own curve): the survival function of the mixture of the members. Members of competing-risks
  runs average their CIF_k(t | x) the same way (the mixture's CIFs); members must give the same kind of
  curve (:func:`check_members`), and may be of any families.

Loading (:meth:`Ensemble.load`) treats the folder as untrusted data: ``ensemble.json`` is a regular file
(not a link) of bounded size; member names are plain names, unique, and at most :data:`MAX_MEMBERS`;
``members/`` and each member folder are real folders (not links), so every file opened lies inside the
ensemble; each member is then loaded by :meth:`.predictor.Predictor.load` with all its checks; shifts are
finite and scales finite and positive; the members read the same input columns.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

from ..survival.data import DataError
from .predictor import ARTEFACT, Predictor, read_artifact_json

ENSEMBLE = "ensemble.json"
FORMAT = "survopt-ensemble/1"
MEMBERS = "members"
MAX_MEMBERS = 1000  # survopt-tune's bags hold seeds x folds members (15 by default)
MAX_BYTES = 1 << 20  # ensemble.json: ~100 bytes per member
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MEMBER_FILES = (ARTEFACT, "best.pt")  # all a member needs to predict (predictor.Predictor.load)


def load_predictor(path: str | Path, trust: tuple[str, ...] = ()) -> "Predictor | Ensemble":
    """A run dir (``predictor.json``) or an ensemble folder (``ensemble.json``), ready to predict;
    ``trust``: the ``model._target_`` paths the user repeated (``--trust``)."""
    from .checkpoint import file_kind

    return Ensemble.load(path) if file_kind(Path(path) / ENSEMBLE) != "missing" else Predictor.load(path, trust)


class Ensemble:
    """Members (each a :class:`.predictor.Predictor`) with their shift and scale; the same surface as a
    Predictor for :func:`.predict.predict_file`: ``columns``, ``missing``, ``set_unseen``, ``predict``."""

    def __init__(self, members: list[Predictor], shifts: list[float], scales: list[float], folder: Path) -> None:
        self.members, self.shifts, self.scales, self.run_dir = members, shifts, scales, folder
        #: the largest |S(t|x) - the runs' own S(t|x)| the members' compacted baselines allow (a mean of
        #: curves each within e_k is within max e_k)
        self.baseline_error = max(m.baseline_error for m in members)

    @property
    def columns(self) -> list[str]:
        return self.members[0].columns

    @property
    def causes(self) -> int:
        return self.members[0].causes

    @property
    def family(self) -> Any:
        """None for a bag of Cox runs (scored by its mean standardized risk); else a member's fitted family: the
        bag holds curves of another kind too and is scored by its mean curves (:mod:`.estimator`'s ``score``)."""
        return next((m.family for m in self.members if m.family is not None), None)

    def curve_columns(self, times: Sequence[float]) -> list[str]:
        return self.members[0].curve_columns(times)

    @property
    def missing(self) -> str:
        """``impute`` when every member fills missing cells, else the first other member's policy."""
        return next((m.missing for m in self.members if m.missing != "impute"), "impute")

    def set_unseen(self, policy: str) -> None:
        for member in self.members:
            member.set_unseen(policy)

    def predict(self, label: str, column: dict[str, list[str]], rows: list[int],
                times: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(risk, S(t|x) at ``times`` or None) in float64: the means above over the members, each member
        encoding the raw cells with its own schema (its own fill values and standardization)."""
        risk = torch.zeros(len(rows), dtype=torch.float64)
        surv = torch.zeros(len(rows), len(times) * self.causes, dtype=torch.float64) if times else None
        for member, shift, scale in zip(self.members, self.shifts, self.scales):
            r, s = member.predict(label, column, rows, times)
            risk += (r.double() - shift) / scale
            if surv is not None:
                surv += s.double()
        n = len(self.members)
        return risk / n, (surv / n if surv is not None else None)

    @classmethod
    def load(cls, folder: str | Path) -> "Ensemble":
        """Read ``ensemble.json`` and every member as untrusted data; DataError (one line) naming the file."""
        from .checkpoint import file_kind

        folder = Path(folder)
        path = folder / ENSEMBLE
        spec = read_artifact_json(path, "ensemble", MAX_BYTES, (FORMAT,))
        try:
            entries = spec["members"]
            if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_MEMBERS:
                raise ValueError(f"members: a list of 1 to {MAX_MEMBERS} members")
            names, shifts, scales = [], [], []
            for i, entry in enumerate(entries):
                name, shift, scale = entry["name"], entry["shift"], entry["scale"]
                if not isinstance(name, str) or not NAME.fullmatch(name) or name in names:
                    raise ValueError(f"members[{i}].name: {str(name)[:60]!r} is not a plain, unique folder name")
                if type(shift) not in (int, float) or type(scale) not in (int, float) or not math.isfinite(shift) \
                        or not math.isfinite(scale) or scale <= 0:
                    raise ValueError(f"members[{i}]: shift must be finite and scale finite and > 0")
                names.append(name), shifts.append(float(shift)), scales.append(float(scale))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise DataError(f"{path}: unusable ensemble file ({' '.join(str(exc).split())[:300] or repr(exc)})") \
                from None
        for where in (folder / MEMBERS, *(folder / MEMBERS / n for n in names)):
            kind = file_kind(where)
            if kind != "a directory":
                raise DataError(f"{where}: {'missing' if kind == 'missing' else kind}, not a member folder of "
                                f"{path}; members are real folders inside the ensemble")
        members = [Predictor.load(folder / MEMBERS / name) for name in names]
        check_members(members, [folder / MEMBERS / name / ARTEFACT for name in names])
        return cls(members, shifts, scales, folder)


def check_members(members: Sequence[Predictor], paths: Sequence[Path]) -> None:
    """Members an ensemble can average: the same input columns, and curves of the same kind (S(t), or the
    CIFs of the same number of causes: a mean of CIFs is the mixture's CIF, a mean of an S and a CIF is
    nothing). Any families mix: each member's curve is its own and the mean of survival functions is one."""
    columns, causes = members[0].columns, members[0].causes
    for path, member in zip(paths, members):
        if sorted(member.columns) != sorted(columns):
            raise DataError(f"{path}: reads columns {member.columns}, the first member {columns}; an ensemble's "
                            "members score the same rows")
        if member.causes != causes:
            kinds = {1: "S(t)"}
            raise DataError(f"{path}: predicts {kinds.get(member.causes, f'the CIFs of {member.causes} causes')}, the "
                            f"first member {kinds.get(causes, f'the CIFs of {causes} causes')}; an ensemble averages "
                            "one kind of curve")


def save_ensemble(folder: str | Path, members: Sequence[tuple[str | Path, float, float]]) -> Path:
    """Write the ensemble folder of ``members`` (run dir, shift, scale); returns it. DataError if it exists.

    Each member is first loaded (:meth:`.predictor.Predictor.load`: a run that cannot predict is refused
    here, not at prediction time), then its ``predictor.json`` and ``best.pt`` are copied into
    ``members/<run dir name>/``. The folder is built under a temporary name beside its target and renamed
    into place, so an interrupted save leaves no half ensemble under the name."""
    from ..durable import write_text_atomic
    from .checkpoint import file_kind

    folder = Path(folder)
    if os.path.lexists(folder):
        raise DataError(f"{folder}: exists; an ensemble is written into a new folder")
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise DataError(f"{folder}: {len(members)} members; an ensemble holds 1 to {MAX_MEMBERS}")
    names = [Path(run_dir).name for run_dir, _, _ in members]
    if len(set(names)) != len(names) or not all(NAME.fullmatch(n) for n in names):
        raise DataError(f"{folder}: member run dirs need distinct plain names, got {names}")
    check_members([Predictor.load(run_dir) for run_dir, _, _ in members],
                  [Path(run_dir) / ARTEFACT for run_dir, _, _ in members])
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        entries = []
        for name, (run_dir, shift, scale) in zip(names, members):
            (tmp / MEMBERS / name).mkdir(parents=True)
            for file in MEMBER_FILES:
                source = Path(run_dir) / file
                if file_kind(source) != "file":  # loaded above; a link planted since is not followed
                    raise DataError(f"{source}: {file_kind(source)}, not a member file")
                shutil.copy2(source, tmp / MEMBERS / name / file, follow_symlinks=False)  # its mode too: best.pt
            entries.append({"name": name, "shift": float(shift), "scale": float(scale)})
        spec = {"format": FORMAT, "risk": "mean over members of (member risk - shift) / scale",
                "survival": "mean over members of the member's S(t|x)", "members": entries}
        write_text_atomic(json.dumps(spec, indent=1) + "\n", tmp / ENSEMBLE)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the folder is a result, readable as the umask says
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
