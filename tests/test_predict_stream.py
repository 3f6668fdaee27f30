"""``survopt-predict`` reads its input column-wise and streams it (issue 27 item 4): the output does
not depend on the batch size or the input's format, and a bad row late in the file is still one line
with no output left behind. (Peak memory at 10^5 and 10^6 rows: benchmarks/bench_read.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from survopt_hydra.survival.data import DataError, resolve_path

pytestmark = pytest.mark.slow  # trains a run
GBSG2 = "pkg://lifelines/datasets/gbsg2.csv"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from survopt_hydra.app.compose import compose_train
    from survopt_hydra.app.trainer import train

    d = tmp_path_factory.mktemp("gbsg2")
    train(compose_train(["data=gbsg2", "model=linear", "trainer.max_epochs=2", "trainer.progress_bar=false"]), d)
    return d


def test_output_is_the_same_for_any_batch_size_and_for_parquet(run_dir, tmp_path):
    pd = pytest.importorskip("pandas")
    from survopt_hydra.app.predict import predict_file

    frame = pd.read_csv(resolve_path(GBSG2))
    frame.to_csv(tmp_path / "rows.csv", index=False)
    frame[list(reversed(frame.columns))].to_parquet(tmp_path / "rows.parquet", index=False)
    outputs = []
    for name, size in (("rows.csv", 4096), ("rows.csv", 7), ("rows.parquet", 50)):
        out, n = predict_file(run_dir, tmp_path / name, tmp_path / f"{name}.{size}.out.csv", [365.0, 1000.0],
                              batch_size=size)
        assert n == 686
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0].splitlines()[686].startswith("686,")


def test_a_bad_row_in_the_last_batch_is_one_line_and_leaves_nothing(run_dir, tmp_path):
    pd = pytest.importorskip("pandas")
    from survopt_hydra.app.predict import predict_file

    frame = pd.read_csv(resolve_path(GBSG2)).astype({"age": object})
    frame.loc[679, "age"] = "old"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv: non-numeric value 'old' in column 'age' at row 680 \(numeric in "
                                        r"the training data\)$"):
        predict_file(run_dir, tmp_path / "bad.csv", tmp_path / "bad.out.csv", [], batch_size=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
