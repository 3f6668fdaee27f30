"""A real competing-risks cohort as a CSV for ``data=csv data.causes=3``: FLCHAIN, shipped offline by scikit-survival.

    pip install scikit-survival
    python scripts/flchain_competing.py flchain_cr.csv
    survopt-train data=csv data.path=flchain_cr.csv data.duration_col=futime data.event_col=cause \\
        data.causes=3 data.missing=impute family=deephit

FLCHAIN (Dispenzieri et al., Mayo Clin. Proc. 87 (2012) 517-523; R's ``survival::flchain``): 7,874
residents of Olmsted County aged 50 or more, serum free light chains measured at a sample date,
followed for death; the cause of death is an ICD chapter. scikit-survival ships it as an ARFF file
(``sksurv/datasets/data/flchain.arff``); this script reads that file with ``sksurv.io.loadarff`` and
writes, per patient: ``age``, ``sex``, ``kappa``, ``lambda`` (the two light chains), ``creatinine``
(1,350 missing: train with ``data.missing=impute``), ``mgus`` (monoclonal gammopathy), ``futime``
(days; 3 patients have 0) and ``cause``: 0 alive at the end of follow-up, 1 circulatory death
(745), 2 cancer death (ICD chapter Neoplasms, 567), 3 any other death (857). ``sample.yr`` and
``flc.grp`` (a decile of kappa + lambda) are left out. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

CAUSES = {"Circulatory": 1, "Neoplasms": 2}  # every other chapter: 3


def flchain_frame():
    """The cohort as a pandas DataFrame (the columns above)."""
    import sksurv
    from sksurv.io import loadarff

    df = loadarff(os.path.join(os.path.dirname(sksurv.__file__), "datasets", "data", "flchain.arff"))
    dead = df["death"].astype(str) == "dead"
    chapter = df["chapter"].astype(str)
    cause = dead.astype(int) * chapter.map(lambda c: CAUSES.get(c, 3)).astype(int)
    out = df[["age", "sex", "kappa", "lambda", "creatinine", "mgus", "futime"]].copy()
    out["sex"], out["mgus"] = out["sex"].astype(str), out["mgus"].astype(str)
    out["cause"] = cause
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the CSV to write")
    args = parser.parse_args(argv)
    try:
        frame = flchain_frame()
    except ModuleNotFoundError:
        raise SystemExit("error: FLCHAIN comes with scikit-survival: pip install scikit-survival") from None
    frame.to_csv(args.out, index=False)
    counts = frame["cause"].value_counts().sort_index().to_dict()
    print(f"wrote {len(frame)} patients to {args.out} (cause counts {counts})")


if __name__ == "__main__":
    main()
