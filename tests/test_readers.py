"""Column-wise reading (issue 27 item 1, issue 25's header items): CSV and Parquet through Arrow.

The references are independent of the reader: Python's own ``float()`` and ``str.strip`` for
the cell rule, pandas for whole tables, Python's csv module for the files Arrow cannot parse,
and the same file read in one batch or in many (the answer may not depend on batch edges).
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from survopt_hydra.survival import readers
from survopt_hydra.survival.cells import (FLOAT32_MAX, MISSING, MISSING_SPELLINGS, MISSING_TOKENS, NONFINITE, NUL,
                                          NUMBER, OVERFLOW, TEXT, WHITESPACE, parse)
from survopt_hydra.survival.data import DataError, load_csv

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")


def python_rule(cell: str) -> tuple[int, float]:
    """The per-cell rule written out with Python's own str.strip, str.lower and float()."""
    cell = cell.strip()
    if cell.lower() in MISSING_TOKENS:
        return MISSING, math.nan
    if "\x00" in cell:
        return NUL, math.nan
    try:
        value = float(cell)
    except ValueError:
        return TEXT, math.nan
    if not math.isfinite(value):
        return NONFINITE, value
    return (OVERFLOW if abs(value) > FLOAT32_MAX else NUMBER), value


ODD_CELLS = ["", " ", "NA", "na", "nA", " N/A ", "NaN", "nan", "NAN", "null", "NULL", "Null", "none", "-", "?",
             "1", " 2 ", "\t3\n", "\u30004\u3000", "\x1c5\x1f", "1_000", "\u0661\u0662", "+1", "-0", ".5", "5.",
             "1e3", "1E-3", "1e400", "-1e400", "1e-400", "1e39", "-3.5e38", "3.4e38", "inf", "-Infinity", "+inf",
             "+nan", "-nan", "nan(1)", "0x10", "1,5", "1 000", "abc", "a\x00b", "\x00", "missing", "é", "\u00a0"]


def test_cell_rule_matches_python_float_and_strip_on_every_kind_of_cell():
    rng = np.random.default_rng(0)
    plain = [repr(float(v)) for v in rng.normal(0, 1e3, 500)] + [str(int(v)) for v in rng.integers(-10**6, 10**6, 500)]
    plain += [f"{v:.17g}" for v in rng.standard_cauchy(500) * 1e30]
    for column in (ODD_CELLS, plain, plain + ["NA"], plain + [" 7"], ODD_CELLS * 3):
        expected = [python_rule(c) for c in column]
        for codes in (False, True):
            cells = parse(pa.array(column, pa.string()), codes=codes)
            assert cells.kind.tolist() == [k for k, _ in expected], (column[:3], codes)
            np.testing.assert_array_equal(cells.values, [v for _, v in expected])  # same bits (NaN == NaN here)
            assert [cells.cell(i) for i in range(len(column))] == [c.strip() for c in column]


def test_missing_spellings_are_exactly_the_case_variants_of_the_tokens():
    # no character outside ASCII lowers into a token's letters, so the spellings match cell.lower()
    letters = set("".join(MISSING_TOKENS))
    lowering = {c for c in map(chr, range(0x110000)) if c.lower() != c and set(c.lower()) <= letters}
    assert lowering <= set("NALU"), lowering
    assert {s.lower() for s in MISSING_SPELLINGS} == set(MISSING_TOKENS)
    assert len(MISSING_SPELLINGS) == sum(2 ** sum(ch.isalpha() for ch in t) for t in MISSING_TOKENS)


def test_arrow_trim_is_python_strip():
    import pyarrow.compute as pc

    assert WHITESPACE == "".join(c for c in map(chr, range(0x110000)) if c.isspace())

    rng = np.random.default_rng(1)
    alphabet = list(WHITESPACE) + ["a", "1", "é", "\u200b", ","]  # U+200B (zero width space) is not whitespace
    cells = ["".join(rng.choice(alphabet, rng.integers(0, 6))) for _ in range(3000)]
    assert pc.utf8_trim(pa.array(cells), characters=WHITESPACE).to_pylist() == [c.strip() for c in cells]


def cohort(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "time": np.round(rng.exponential(50, n), 3), "event": (rng.random(n) < 0.6).astype(int),
        "age": np.round(rng.normal(60, 10, n), 1), "dose": rng.integers(0, 5, n).astype(float),
        "marker": np.round(rng.lognormal(0, 2, n), 6),
        "grade": rng.choice(["I", "II", "III"], n), "site": rng.choice(["north", "south", "east"], n),
    })
    df.loc[rng.random(n) < 0.05, "age"] = np.nan
    df.loc[rng.random(n) < 0.05, "site"] = None
    return df


def test_csv_and_parquet_give_pandas_table(tmp_path):
    df = cohort(3000)
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet", index=False)
    df.to_parquet(tmp_path / "no_suffix.data", index=False)  # found by its magic bytes
    tables = [load_csv(tmp_path / name, "time", "event", missing="impute", indicator=True)
              for name in ("c.csv", "c.parquet", "no_suffix.data")]
    t = tables[0]
    expected = ["age", "age=missing", "dose", "marker", "grade=I", "grade=II", "grade=III",
                "site=east", "site=north", "site=south", "site=missing"]  # sorted levels, then "missing"
    assert t.feature_names == expected
    reference = pd.get_dummies(df.fillna({"site": "missing"}).drop(columns=["time", "event"]), prefix_sep="=",
                               dtype=float)
    reference["age=missing"] = df["age"].isna().astype(float)
    np.testing.assert_array_equal(t.x, reference[expected].to_numpy(np.float32))  # NaN where age is missing
    np.testing.assert_array_equal(t.durations, df["time"].to_numpy(np.float32))
    np.testing.assert_array_equal(t.events, df["event"].to_numpy(np.float32))
    for other in tables[1:]:
        assert other.feature_names == t.feature_names and other.categories == t.categories
        for a, b in ((other.x, t.x), (other.durations, t.durations), (other.events, t.events), (other.rows, t.rows)):
            np.testing.assert_array_equal(a, b)


def test_parquet_types_nulls_and_refusals(tmp_path):
    import pyarrow.parquet as pq

    n = 40
    base = {"time": pa.array(np.arange(1, n + 1, dtype=np.int32)), "event": pa.array([i % 3 == 0 for i in range(n)]),
            "grade": pa.array(["a", "b"] * (n // 2)).dictionary_encode(),
            "w": pa.array([1.5, None, float("nan")] + [2.0] * (n - 3))}
    pq.write_table(pa.table(base), tmp_path / "ok.parquet")
    t = load_csv(tmp_path / "ok.parquet", "time", "event", missing="impute")
    np.testing.assert_array_equal(t.events, [i % 3 == 0 for i in range(n)])  # booleans are 0/1
    assert t.feature_names == ["grade=a", "grade=b", "w"]
    assert np.isnan(t.x[1:3, 2]).all() and t.x[0, 2] == 1.5  # null and NaN are missing cells
    with pytest.raises(DataError, match=r"ok.parquet: missing values in 1 column\(s\): 'w': 2 \(first at row 2\)"):
        load_csv(tmp_path / "ok.parquet", "time", "event")
    pq.write_table(pa.table({**base, "when": pa.array(np.arange(n).astype("datetime64[s]"))}), tmp_path / "ts.parquet")
    with pytest.raises(DataError, match=r"^\S*ts.parquet: column 'when' holds timestamp\[\w+\] values; allowed: "
                                        "numbers, booleans, text"):
        load_csv(tmp_path / "ts.parquet", "time", "event")
    assert load_csv(tmp_path / "ts.parquet", "time", "event", feature_cols=["grade"]).feature_names == ["grade=a",
                                                                                                        "grade=b"]
    (tmp_path / "fake.parquet").write_text("time,event,a\n1,1,2\n")
    with pytest.raises(DataError, match=r"fake.parquet: not a readable Parquet file \(.+\)$") as err:
        load_csv(tmp_path / "fake.parquet", "time", "event")
    assert "\n" not in str(err.value)
    inf = {**base, "w": pa.array([2.0, math.inf] + [1.0] * (n - 2))}
    pq.write_table(pa.table(inf), tmp_path / "inf.parquet")
    with pytest.raises(DataError, match="non-finite value 'inf' in column 'w' at row 2"):
        load_csv(tmp_path / "inf.parquet", "time", "event")


def rows_csv(path: Path, rows: list[list], header=("time", "event", "age", "stage")) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [list(header), *rows]) + "\n")
    return path


def outcome(path: Path, **kw):
    try:
        t = load_csv(path, "time", "event", **kw)
    except DataError as exc:
        return str(exc)
    x = np.where(np.isnan(t.x), None, t.x).tolist()  # NaN != NaN in a list comparison
    return t.feature_names, x, t.durations.tolist(), t.events.tolist(), t.rows.tolist()


def test_batch_edges_change_neither_the_table_nor_the_message(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    base = [[round(float(rng.exponential(9)), 2), int(rng.random() < 0.6), int(rng.integers(30, 90)), "1"]
            for _ in range(400)]
    for r in base[150:]:
        r[3] = "abc"[int(rng.integers(3))]  # numbers first, text from row 151 on: re-read as a category
    base[7][2] = ""  # a missing cell early, for drop_rows / impute
    cases = {"reread": (base, {"missing": "impute"}), "drop": (base, {"missing": "drop_rows"}),
             "refuse": (base, {})}
    late = [list(r) for r in base]
    late[390][0] = "-1"  # a refusal in the last batch
    cases["late"] = (late, {"missing": "drop_rows"})
    mixed = [list(r) for r in base]
    for r in mixed[:300]:
        r[3] = "2"  # most cells numbers, the last 100 text: refused as mixed, naming row 301
    cases["mixed"] = (mixed, {"missing": "impute"})
    for name, (rows, kw) in cases.items():
        path = rows_csv(tmp_path / f"{name}.csv", rows)
        whole = outcome(path, **kw)
        monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 256)  # ~20 rows a batch
        pieces = outcome(path, **kw)
        monkeypatch.undo()
        assert pieces == whole, name
    assert outcome(tmp_path / "reread.csv", missing="impute")[0] == ["age", "stage=1", "stage=a", "stage=b", "stage=c"]
    reads = []
    original = readers.CsvSource.batches
    monkeypatch.setattr(readers.CsvSource, "batches", lambda self, names: reads.append(names) or original(self, names))
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 256)
    outcome(tmp_path / "reread.csv", missing="impute")
    assert reads == [["time", "event", "age", "stage"], ["stage"]]  # the category's first batches were numbers
    assert "negative duration '-1' in column 'time' at row 391" in outcome(tmp_path / "late.csv", missing="drop_rows")
    assert "column 'stage' is numeric except for 100 of 400 cells, first" in outcome(tmp_path / "mixed.csv",
                                                                                     missing="impute")


def test_files_arrow_cannot_parse_are_read_or_refused_by_the_csv_module(tmp_path, monkeypatch):
    rows = [[i + 1, i % 2, 40 + i % 7, "ab"[i % 2]] for i in range(200)]
    clean = rows_csv(tmp_path / "clean.csv", rows)
    lines = clean.read_text().splitlines()
    spaced = tmp_path / "spaced.csv"  # a line of only spaces (blank to the csv module, one field to Arrow)
    spaced.write_text("\n".join(lines[:150] + ["   "] + lines[150:]) + "\n")
    handed = []
    original = readers.CsvSource._python_batches
    monkeypatch.setattr(readers.CsvSource, "_python_batches",
                        lambda self, pa_, index, skip: handed.append(skip) or original(self, pa_, index, skip))
    for block in (1 << 20, 256):  # the hand-over at the first batch, or after several
        monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", block)
        monkeypatch.setattr(readers, "FALLBACK_BATCH_ROWS", 7)
        assert outcome(spaced) == outcome(clean)
    assert handed[0] == 0 and 0 < handed[1] <= 150  # rows Arrow had read before it gave up
    wide = tmp_path / "wide.csv"
    wide.write_text("\n".join(lines[:120] + ["1,1,2,a,9"] + lines[120:]) + "\n")
    assert outcome(wide) == f"{wide}: row 120 (line 121) has 5 fields, header has 4"


def test_wide_headers_are_checked_in_linear_time_and_messages_stay_short(tmp_path):
    """issue 25: a 40k-column header took 34 s (quadratic) and its error was one 298 KB line."""
    width = 200_000
    names = [f"c{i}" for i in range(width)]
    dupes = tmp_path / "dupes.csv"
    dupes.write_text(",".join(["time", "event"] + names + names[:50]) + "\n" + ",".join(["1"] * (width + 52)) + "\n")
    with pytest.raises(DataError) as err:
        load_csv(dupes, "time", "event")
    message = str(err.value)
    assert message.startswith(f"{dupes}: duplicate column name(s): c0, c1, c10,") and message.endswith("and 40 more")
    assert len(message) < 400
    absent = tmp_path / "absent.csv"
    absent.write_text(",".join(["time", "event"] + names) + "\n" + ",".join(["1"] * (width + 2)) + "\n")
    with pytest.raises(DataError) as err:
        load_csv(absent, "time", "event", feature_cols=["c5", "nope", "nope2"])
    message = str(err.value)
    assert "2 columns not found: 'nope', 'nope2'; available: time, event, c0," in message
    assert message.endswith(f"and {width + 2 - 20} more") and len(message) < 400
    long_cell = tmp_path / "long.csv"
    rows_csv(long_cell, [[1, 1, 5, "a"], [2, 0, "x" * 100_000, "b"], [3, 1, 7, "a"]])
    message = outcome(long_cell)
    assert "'xxxxxxxxxx" in message and "... (100000 characters)" in message and len(message) < 400


def test_a_table_that_cannot_fit_in_memory_is_refused_before_anything_is_reserved(tmp_path, monkeypatch):
    import os

    df = cohort(1000)
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet", index=False)
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 10}  # a machine of 40 KiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    for name in ("c.csv", "c.parquet"):  # rows: the CSV's line breaks, the Parquet file's own count
        with pytest.raises(DataError, match=rf"{name}: 1,00[02] rows x 5 feature columns need at least 0.0 MiB as "
                                            r"float32, more than this machine's 0.0 MiB$"):
            load_csv(tmp_path / name, "time", "event")


def test_missing_pyarrow_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    path = rows_csv(tmp_path / "c.csv", [[1, 1, 2, "a"], [2, 0, 3, "b"]])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(DataError, match=r'^reading data files needs pyarrow, which is not installed: pip install '
                                         r'"survopt-hydra\[app\]"$'):
        load_csv(path, "time", "event")


@pytest.mark.slow
def test_the_library_imports_pyarrow_only_to_read_a_file_and_never_pandas(tmp_path):
    """pyarrow's own conversions import pandas on first use (0.2 s, 50 MB): the loader avoids them."""
    df = cohort(500)
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet", index=False)
    probe = ("import sys, survopt_hydra.survival, survopt_hydra.survival.data as d\n"
             "print('pyarrow' in sys.modules)\n"
             "for name in ('c.csv', 'c.parquet'):\n"
             "    t = d.load_csv(name, 'time', 'event', missing='impute')\n"
             "    d.load_csv(name, 'time', 'event', schema=t.schema)\n"
             "print('pyarrow' in sys.modules, 'pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                         cwd=tmp_path)
    assert out.stdout.split() == ["False", "True", "False"]


@pytest.mark.slow
def test_read_benchmark_runs_and_measures_every_tool():
    """benchmarks/bench_read.py at a tiny size (its figures are benchmark output, not asserted here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_read", Path(__file__).resolve().parents[1] / "benchmarks"
                                                  / "bench_read.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run(quick=True, sizes=[2000])
    assert [(c["n"], c["format"]) for c in result["cases"]] == [(2000, "csv"), (2000, "parquet")]
    for case in result["cases"]:
        assert case["float32_mb"] * 2**20 == 2000 * 32 * 4  # 20 numbers, 3 + 8 levels, 1 missing level
        assert all(case[f"{tool}_s"] > 0 for tool in ("ours", "pyarrow", "pandas"))
    assert "| 2,000 | csv |" in bench.markdown(result)
