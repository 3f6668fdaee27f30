"""CSV loading/validation, splits, standardization and synthetic images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from survopt_hydra.survival.data import DataError, load_csv, resolve_path
from survopt_hydra.survival.splits import split_indices
from survopt_hydra.survival.standardize import Standardizer
from survopt_hydra.survival.synthetic_images import make_synthetic_images
from survopt_hydra.survival.metrics import concordance_index

GBSG2 = "pkg://lifelines/datasets/gbsg2.csv"


def write(tmp_path: Path, text: str, name: str = "cohort.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_gbsg2_loads_and_matches_pandas():
    pd = pytest.importorskip("pandas")
    table = load_csv(GBSG2, "time", "cens")
    df = pd.read_csv(resolve_path(GBSG2))
    assert len(table) == len(df) == 686
    assert table.x.dtype == table.durations.dtype == table.events.dtype == np.float32
    np.testing.assert_array_equal(table.durations, df["time"].to_numpy(np.float32))
    np.testing.assert_array_equal(table.events, df["cens"].to_numpy(np.float32))
    assert table.categories == {"horTh": ["no", "yes"], "menostat": ["Post", "Pre"], "tgrade": ["I", "II", "III"]}
    expected = pd.get_dummies(df.drop(columns=["time", "cens"]), prefix_sep="=", dtype=float)
    assert sorted(table.feature_names) == sorted(expected.columns)
    np.testing.assert_array_equal(table.x, expected[table.feature_names].to_numpy(np.float32))
    assert table.feature_names[:3] == ["horTh=no", "horTh=yes", "age"]  # file order, levels sorted


def test_feature_cols_selects_and_orders():
    table = load_csv(GBSG2, "time", "cens", feature_cols=["pnodes", "age"])
    assert table.feature_names == ["pnodes", "age"] and table.x.shape == (686, 2)
    assert table.categories == {}


def test_pkg_scheme_does_not_import_the_package(monkeypatch):
    for name in [m for m in sys.modules if m == "lifelines" or m.startswith("lifelines.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    path = resolve_path(GBSG2)
    assert path.is_file() and path.parts[-3:] == ("lifelines", "datasets", "gbsg2.csv")
    assert "lifelines" not in sys.modules


@pytest.mark.parametrize(
    "path,detail",
    [
        ("pkg://no_such_pkg_xyz/data.csv", "package 'no_such_pkg_xyz' is not installed"),
        ("pkg://lifelines/datasets/nope.csv", "no such file in the package"),
        ("/definitely/not/here.csv", "/definitely/not/here.csv"),
    ],
)
def test_missing_files_are_reported(path, detail):
    with pytest.raises(DataError, match="^data.path: file not found: ") as err:
        resolve_path(path)
    assert detail in str(err.value)
    with pytest.raises(DataError, match="^data.test_path: file not found"):
        load_csv(path, "time", "cens", key="data.test_path")


GOOD = "time,event,age,grade\n1,1,50,x\n2,0,61,y\n0,1,72,x\n"


@pytest.mark.parametrize(
    "text,cols,pieces",
    [
        ("", ("t", "e"), ["file is empty"]),
        ("t,e,a\n", ("t", "e"), ["no data rows"]),
        (GOOD, ("Time", "event"), ["'Time' not found", "available: time, event, age, grade", "did you mean 'time'"]),
        (GOOD, ("time", "evnt"), ["column 'evnt' not found", "did you mean 'event'"]),
        (GOOD, ("time", "status"), ["column 'status' not found; available: time, event, age, grade"]),
        ("t,e,a\n1,1,2\n2,x,3\n", ("t", "e"), ["non-numeric value 'x'", "column 'e'", "row 2"]),
        ("t,e,a\n1,1,2\nsoon,0,3\n", ("t", "e"), ["non-numeric value 'soon'", "column 't'", "row 2"]),
        ("t,e,a\n1,1,2\n2,0,\n", ("t", "e"), ["missing values in 1 column(s): 'a': 1 (first at row 2)"]),
        ("t,e,a\n1,1,NA\n2,0,3\n", ("t", "e"), ["missing values", "'a': 1 (first at row 1)", "data.missing=impute"]),
        ("t,e,a\n1,1,2\n-3,0,3\n", ("t", "e"), ["negative duration", "column 't'", "row 2"]),
        ("t,e,a\n1,1,2\n3,2,3\n", ("t", "e"), ["event value '2'", "row 2", "allowed: 0, 1"]),
        ("t,e,a\n1,0,2\n3,0,3\n", ("t", "e"), ["no events"]),
        ("t,e,a\n1,1,inf\n3,0,3\n", ("t", "e"), ["non-finite value 'inf'", "column 'a'", "row 1"]),
        ("t,e,a\n1,1,2\n3,0\n", ("t", "e"), ["row 2 (line 3) has 2 fields, header has 3"]),
        ("t,e,a,a\n1,1,2,3\n", ("t", "e"), ["duplicate column name(s): a"]),
    ],
)
def test_bad_files_give_one_line_errors_naming_file_and_problem(tmp_path, text, cols, pieces):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_csv(path, *cols)
    message = str(err.value)
    assert "\n" not in message and message.startswith(path)
    for piece in pieces:
        assert piece in message


def test_bad_feature_selection_refused(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(DataError, match="'time' is repeated or is the duration/event column"):
        load_csv(path, "time", "event", feature_cols=["age", "time"])
    with pytest.raises(DataError, match="'age' is repeated"):
        load_csv(path, "time", "event", feature_cols=["age", "age"])
    with pytest.raises(DataError, match="no feature columns"):
        load_csv(path, "time", "event", feature_cols=[])
    with pytest.raises(DataError, match="column 'agee' not found.*did you mean 'age'"):
        load_csv(path, "time", "event", feature_cols=["agee"])


def test_zero_duration_blank_lines_and_numeric_looking_values(tmp_path):
    table = load_csv(write(tmp_path, "t,e,a,g\n0,1,1e1,x\n\n2,1.0,-2,y\n\n"), "t", "e")
    np.testing.assert_array_equal(table.durations, [0.0, 2.0])
    np.testing.assert_array_equal(table.events, [1.0, 1.0])
    np.testing.assert_array_equal(table.x, [[10.0, 1.0, 0.0], [-2.0, 0.0, 1.0]])
    assert table.feature_names == ["a", "g=x", "g=y"]


def test_test_file_uses_training_levels(tmp_path):
    train = load_csv(write(tmp_path, "t,e,g,a\n1,1,b,1\n2,0,a,2\n3,1,c,3\n", "train.csv"), "t", "e")
    assert train.feature_names == ["g=a", "g=b", "g=c", "a"]
    # "d" is unseen: refused by default (data.unseen=refuse), all zeros with unseen="zero";
    # "2"/"1"-like levels must not turn g numeric in the test file.
    test_path = write(tmp_path, "t,e,g,a\n1,1,a,5\n2,0,d,6\n", "test.csv")
    with pytest.raises(DataError, match=r"test.csv: 1 row\(s\) of column 'g' hold levels not seen in training, "
                       r"first 'd' at row 2 \(training levels: a, b, c\); data.unseen=zero"):
        load_csv(test_path, "t", "e", categories=train.categories)
    test = load_csv(test_path, "t", "e", categories=train.categories, unseen="zero")
    assert test.feature_names == train.feature_names
    np.testing.assert_array_equal(test.x, [[1, 0, 0, 5], [0, 0, 0, 6]])
    numeric_levels = load_csv(write(tmp_path, "t,e,g,a\n1,1,1,5\n", "t2.csv"), "t", "e", categories={"g": ["1", "2"]})
    np.testing.assert_array_equal(numeric_levels.x, [[1, 0, 5]])


def test_test_file_with_text_in_a_numeric_training_column_is_refused(tmp_path):
    path = write(tmp_path, "t,e,g,a\n1,1,a,5\n2,0,a,six\n")
    with pytest.raises(DataError, match=r"value 'six' in column 'a' at row 2 \(numeric in the training data\)"):
        load_csv(path, "t", "e", categories={"g": ["a"]})
    with pytest.raises(DataError, match="categorical column 'z' from the training data is not a feature"):
        load_csv(path, "t", "e", categories={"z": ["a"]})


def test_split_is_stratified_deterministic_and_complete():
    events = (np.random.default_rng(0).random(500) < 0.3).astype(np.float32)
    train, val, test = split_indices(events, (0.7, 0.15, 0.15), seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(500))
    assert (len(train), len(val), len(test)) == pytest.approx((350, 75, 75), abs=2)
    for part in (train, val, test):
        assert abs(events[part].mean() - events.mean()) < 0.02
    again = split_indices(events, (0.7, 0.15, 0.15), seed=3)
    other = split_indices(events, (0.7, 0.15, 0.15), seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(train, other[0])


def test_split_gives_every_split_an_event_and_allows_empty_test():
    events = np.zeros(40)
    events[[3, 17, 30]] = 1
    for seed in range(10):
        parts = split_indices(events, (0.8, 0.1, 0.1), seed=seed)
        assert all(events[p].sum() >= 1 for p in parts)
    train, val, test = split_indices(events, (0.85, 0.15, 0.0), seed=0)
    assert len(test) == 0 and len(train) + len(val) == 40 and events[val].sum() >= 1


def test_split_refuses_bad_fractions_and_too_few_events():
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(np.ones(10), (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="3 non-negative numbers"):
        split_indices(np.ones(10), (0.5, 0.5))
    with pytest.raises(ValueError, match="2 event"):
        split_indices(np.array([1, 1, 0, 0, 0]), (0.6, 0.2, 0.2))


def test_standardizer_fits_training_rows_only_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(5, 2, 200), np.full(200, 3.0)]).astype(np.float32)
    scaler = Standardizer().fit(train)
    z = scaler.transform(train)
    np.testing.assert_allclose(z.mean(axis=0), [0, 0], atol=1e-5)
    np.testing.assert_allclose(z[:, 0].std(), 1, atol=1e-5)
    np.testing.assert_array_equal(z[:, 1], 0)  # constant column: std treated as 1
    other = np.array([[5.0 + 2 * train[:, 0].std(), 4.0]], dtype=np.float32)
    expected = [[(other[0, 0] - train[:, 0].mean()) / train[:, 0].std(), 1.0]]
    np.testing.assert_allclose(scaler.transform(other), expected, rtol=1e-5)

    torch.save(scaler.state_dict(), tmp_path / "s.pt")
    restored = Standardizer()
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    out = restored.transform(torch.tensor(other))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), scaler.transform(other), rtol=1e-6)
    listed = Standardizer()
    listed.load_state_dict({"mean": scaler.mean.tolist(), "std": scaler.std.tolist()})
    np.testing.assert_allclose(listed.transform(other), scaler.transform(other))


def test_standardizer_refuses_misuse():
    with pytest.raises(ValueError, match="call fit"):
        Standardizer().transform(np.zeros((2, 2)))
    scaler = Standardizer().fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected 2 features, got 3"):
        scaler.transform(np.zeros((1, 3)))


def test_synthetic_images_are_deterministic_and_informative():
    images, durations, events, risk = make_synthetic_images(800, size=24, seed=1, return_risk=True)
    assert images.shape == (800, 1, 24, 24) and images.dtype == np.float32
    assert durations.shape == events.shape == (800,) and (durations > 0).all()
    assert set(np.unique(events).tolist()) == {0.0, 1.0}
    assert 0.22 < 1 - events.mean() < 0.38  # ~30% censored
    again = make_synthetic_images(800, size=24, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((images, durations, events), again))
    assert not np.array_equal(images, make_synthetic_images(800, size=24, seed=2)[0])
    # The hazard really drives the times, and the image (total brightness) carries it.
    assert concordance_index(risk, durations, events) > 0.7
    assert concordance_index(images.sum(axis=(1, 2, 3)), durations, events) > 0.65


def test_default_data_is_the_vendored_support_split_on_deepsurvs_rows():
    """``data=support`` (the app default): DeepSurv's 7,098 / 1,775 split, val split off the
    training file by event, standardization fitted on the training rows only."""
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.schemas import check_app_config
    from survopt_hydra.app.data import load_cohort

    data = check_app_config(compose_train())["data"]
    assert data["name"] == "support" and data["test_path"].endswith("support_test.csv")
    cohort = load_cohort(data)
    assert (len(cohort.train) + len(cohort.val), len(cohort.test)) == (7098, 1775)
    assert len(cohort.val) == pytest.approx(0.15 * 7098, abs=2)
    assert int(cohort.train.events.sum() + cohort.val.events.sum()) == 4823 and int(cohort.test.events.sum()) == 1213
    assert cohort.feature_names[:3] == ["age", "sex", "race"] and cohort.train.x.shape[1] == 14
    np.testing.assert_allclose(cohort.train.x.mean(0).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(cohort.train.x.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    assert abs(float(cohort.test.x.mean())) > 1e-4  # test rows are scaled with training statistics, not refitted
    # the test file round-trips the vendored CSV row for row (same order, training scaler undone)
    import pandas as pd

    raw = pd.read_csv(resolve_path(data["test_path"]))
    back = cohort.test.x.numpy() * cohort.standardizer.std + cohort.standardizer.mean
    np.testing.assert_allclose(back, raw[cohort.feature_names].to_numpy(np.float32), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(cohort.test.durations.numpy(), raw["duration"].to_numpy(np.float32))
