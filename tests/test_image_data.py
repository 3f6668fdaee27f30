"""data=images (app/image_data.py): the manifest's checks, the DataLoader's batches, the transforms.

Fixtures are real files the tests write: the synthetic scans (risk depends on the blob each
image shows) as 16-bit PNGs and .npy arrays with a manifest, via app/synthetic_scans.py.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from survopt_hydra.app import image_data, image_files
from survopt_hydra.app.data import load_cohort
from survopt_hydra.app.image_transforms import CenterCrop, Normalize, RandomCrop, RandomFlip, Resize
from survopt_hydra.app.schemas import ImagesDataConfig, SyntheticImagesDataConfig
from survopt_hydra.app.synthetic_scans import NORMALIZE, SPAN, write_synthetic_scans
from survopt_hydra.schemas.checks import validate
from survopt_hydra.survival.data import DataError
from survopt_hydra.survival.synthetic_images import make_synthetic_images

FLIP = {"_target_": "survopt_hydra.app.image_transforms.RandomFlip", "p": 0.5, "dims": [-1, -2]}


def images(manifest: Path | str, **values) -> dict:
    """A checked data=images group, as the app's schema check returns it."""
    return validate(ImagesDataConfig, {"manifest": str(manifest), **values}, "data")


def write_manifest(path: Path, rows: list[list[object]], header=("path", "time", "event")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """96 synthetic 16x16 scans as 16-bit PNGs; rows 1, 3, 5 ... re-written as .npy (same values)."""
    folder = tmp_path_factory.mktemp("scans")
    manifest = write_synthetic_scans(folder, 96, size=16, seed=3)
    rows = list(csv.reader(manifest.open()))
    for i, row in enumerate(rows[1:]):
        if i % 2:
            png = folder / row[0]
            np.save(png.with_suffix(".npy"), np.asarray(Image.open(png), dtype=np.float32)[None] / 65535)
            png.unlink()
            row[0] = png.with_suffix(".npy").name
    return write_manifest(manifest, rows[1:], tuple(rows[0]))


def test_files_give_the_in_memory_cohort(scans: Path) -> None:
    """Same rows, same split, same pixels (to the 16-bit PNG's resolution) as data=synthetic_images."""
    files = load_cohort(images(scans, transform=[NORMALIZE]))
    memory = load_cohort(validate(SyntheticImagesDataConfig, {"n": 96, "size": 16, "seed": 3}, "data"))
    assert files.input_shape == memory.input_shape == (1, 16, 16)
    for name in ("train", "val", "test"):
        a, b = getattr(files, name), getattr(memory, name)
        torch.testing.assert_close(a.durations, b.durations, rtol=0, atol=0)
        torch.testing.assert_close(a.events, b.events, rtol=0, atol=0)
        got = torch.cat([x[0] for x in a.reader.batches([a.keys(torch.arange(len(a)), None)], torch.device("cpu"))])
        torch.testing.assert_close(got, b.x, rtol=0, atol=SPAN / 65535)


def test_images_are_read_per_batch_never_all_at_once(scans: Path, monkeypatch) -> None:
    reads: list[Path] = []
    real = image_files.read
    monkeypatch.setattr(image_files, "read", lambda label, path, *a: reads.append(path) or real(label, path, *a))
    cohort = load_cohort(images(scans))
    assert len(reads) == 1  # loading decodes row 1 only (the input shape); every other file: its header
    batch = next(cohort.train.train_batches([torch.arange(8)], epoch_seed=0))
    assert len(reads) == 9 and batch[0][0].shape == (8, 1, 16, 16)


def test_workers_and_augmentation_give_the_same_batches(scans: Path) -> None:
    """Augmentation is seeded per (epoch seed, manifest row): the same with 0 or 2 workers and in any
    batch; a different epoch seed gives different flips; evaluation reads are never augmented."""
    def epoch(workers: int, seed: int, chunks: list[torch.Tensor]) -> torch.Tensor:
        split = load_cohort(images(scans, num_workers=workers, augment=[FLIP])).train
        return torch.cat([inputs[0] for inputs, _, _ in split.train_batches(chunks, seed)])

    order = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    a = epoch(0, 11, list(order.split(8)))
    torch.testing.assert_close(epoch(2, 11, list(order.split(8))), a, rtol=0, atol=0)
    regrouped = epoch(0, 11, list(order.split(5)))  # other batches, same rows: same augmented images
    torch.testing.assert_close(regrouped, a, rtol=0, atol=0)
    plain = load_cohort(images(scans)).train
    raw = torch.cat([x[0] for x in plain.reader.batches([plain.keys(order, None)], torch.device("cpu"))])
    flipped = [not torch.equal(a[i], raw[i]) for i in range(40)]
    assert 10 < sum(flipped) < 40  # each of two flips with p=0.5: about 3 in 4 images change
    for i in range(40):  # every augmented image is the raw one flipped along some of the dims
        assert any(torch.equal(a[i], raw[i].flip(d)) for d in ([], [-1], [-2], [-1, -2]))
    assert not torch.equal(epoch(0, 12, list(order.split(8))), a)
    torch.testing.assert_close(plain.risks(lambda x: x.flatten(1).sum(1), order),
                               raw.flatten(1).sum(1))  # evaluation: unaugmented, in order


def test_covariates_are_standardized_on_training_rows_and_passed_second(tmp_path: Path) -> None:
    write_synthetic_scans(tmp_path, 60, size=8, seed=0)
    rows = list(csv.reader((tmp_path / "manifest.csv").open()))[1:]
    age = np.random.default_rng(0).normal(60, 10, len(rows))
    write_manifest(tmp_path / "m.csv", [[*r, f"{a:.3f}"] for r, a in zip(rows, age)], ("path", "time", "event", "age"))
    cohort = load_cohort(images(tmp_path / "m.csv", covariate_cols=["age"]))
    assert cohort.covariates == 1 and cohort.feature_names == ["image", "age"]
    train_rows = cohort.train.rows
    ages = np.array([float(f"{a:.3f}") for a in age], dtype=np.float32)
    mean, std = ages[train_rows].mean(), ages[train_rows].std()
    inputs = next(cohort.test.reader.batches([cohort.test.keys(torch.arange(len(cohort.test)), None)],
                                             torch.device("cpu")))
    assert len(inputs) == 2
    np.testing.assert_allclose(inputs[1][:, 0].numpy(), (ages[cohort.test.rows] - mean) / std, rtol=1e-5, atol=1e-5)


def test_parquet_manifest_equals_the_csv_one(scans: Path, tmp_path: Path) -> None:
    import pyarrow.csv
    import pyarrow.parquet

    parquet = scans.with_name("manifest.parquet")
    pyarrow.parquet.write_table(pyarrow.csv.read_csv(scans), parquet)
    a, b = load_cohort(images(scans)), load_cohort(images(parquet))
    assert a.train.rows.tolist() == b.train.rows.tolist()
    torch.testing.assert_close(a.test.durations, b.test.durations, rtol=0, atol=0)


# ------------------------------------------------------------------ refusals: one line naming the row and file
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A manifest folder with 40 small PNGs; the tests add one bad row."""
    write_synthetic_scans(tmp_path / "scans", 40, size=8, seed=1)
    return tmp_path / "scans"


def _rows(folder: Path) -> list[list[str]]:
    return list(csv.reader((folder / "manifest.csv").open()))[1:]


def _refusal(data: dict) -> str:
    with pytest.raises(DataError) as exc:
        load_cohort(data)
    text = str(exc.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink_out", "symlink_dir_out"])
def test_paths_outside_the_manifest_folder_need_allow_outside(folder: Path, tmp_path: Path, case: str) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(outside / "x.png")
    cell = {"absolute": str(outside / "x.png"), "dotdot": "../elsewhere/x.png", "symlink_out": "link.png",
            "symlink_dir_out": "linkdir/x.png"}[case]
    if case == "symlink_out":
        os.symlink(outside / "x.png", folder / "link.png")
    if case == "symlink_dir_out":
        os.symlink(outside, folder / "linkdir")
    rows = _rows(folder)
    rows[6][0] = cell
    manifest = write_manifest(folder / "m.csv", rows)
    text = _refusal(images(manifest))
    assert text.startswith(f"{manifest} row 7 ({cell}): ") and "data.allow_outside=true" in text
    assert len(load_cohort(images(manifest, allow_outside=True)).train) > 0


def test_a_link_that_stays_inside_is_followed(folder: Path) -> None:
    os.symlink(folder / "scan_0003.png", folder / "alias.png")
    rows = _rows(folder)
    rows[0][0] = "alias.png"
    load_cohort(images(write_manifest(folder / "m.csv", rows)))


@pytest.mark.parametrize("case, expect", [
    ("missing", "row 5 (nope.png): file not found"),
    ("empty", "row 5 (empty.png): "),
    ("bad_time", "non-numeric value 'soon' in column 'time' at row 5"),
    ("bad_event", "event value 2 in column 'event' at row 5; allowed: 0, 1"),
    ("blank_path", "row 5: the path cell is empty or not text ('')"),
    ("other_shape", "row 5 (big.png): shape 1x9x9, but row 1's is 1x8x8; every image needs one shape"),
    ("bmp", "row 5 (a.bmp): unknown image format '.bmp'"),
])
def test_bad_rows_are_refused_at_load(folder: Path, case: str, expect: str) -> None:
    rows = _rows(folder)
    if case == "missing":
        rows[4][0] = "nope.png"
    elif case == "empty":
        (folder / "empty.png").write_bytes(b"")
        rows[4][0] = "empty.png"
    elif case == "bad_time":
        rows[4][1] = "soon"
    elif case == "bad_event":
        rows[4][2] = "2"
    elif case == "blank_path":
        rows[4][0] = ""
    elif case == "other_shape":
        Image.fromarray(np.zeros((9, 9), np.uint8)).save(folder / "big.png")
        rows[4][0] = "big.png"
    elif case == "bmp":
        rows[4][0] = "a.bmp"
    manifest = write_manifest(folder / "m.csv", rows)
    assert expect in _refusal(images(manifest))


def test_unknown_column_and_manifest_format(folder: Path) -> None:
    assert "column 'tim' (data.duration_col) not found (did you mean 'time'?)" in _refusal(
        images(folder / "manifest.csv", duration_col="tim"))
    (folder / "m.txt").write_text("path,time,event\n")
    assert "a manifest must be CSV or Parquet" in _refusal(images(folder / "m.txt"))


def test_a_transform_unifies_shapes_and_a_bad_one_is_named(folder: Path) -> None:
    rows = _rows(folder)
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(folder / "big.png")
    rows[4][0] = "big.png"
    manifest = write_manifest(folder / "m.csv", rows)
    resize = {"_target_": "survopt_hydra.app.image_transforms.Resize", "size": 8}
    assert load_cohort(images(manifest, transform=[resize])).input_shape == (1, 8, 8)
    crop = {"_target_": "survopt_hydra.app.image_transforms.CenterCrop", "size": 9}
    cohort = load_cohort(images(manifest, transform=[{**resize, "size": 12}, crop]))  # 8x8 -> 12x12 -> 9x9
    assert cohort.input_shape == (1, 9, 9)
    with pytest.raises(DataError) as exc:  # row 5 is 12x10 -> 14x12 ... any image the crop cannot fit
        load_cohort(images(manifest, transform=[crop]))
    assert "row 1 (scan_0000.png): data.transform[0] (CenterCrop) failed: ValueError: CenterCrop: size [9, 9] is " \
           "larger than the image (8, 8)" in str(exc.value)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_truncated_file_fails_when_first_read_with_one_line(folder: Path, workers: int) -> None:
    """Its header is fine, so loading accepts it (data.verify=header); the first batch that holds it
    ends with one line naming the row and the file, from a worker process too. data.verify=full
    finds it at load time instead."""
    rows = _rows(folder)
    whole = (folder / rows[9][0]).read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) - 40])
    rows[9][0] = "cut.png"
    manifest = write_manifest(folder / "m.csv", rows)
    cohort = load_cohort(images(manifest, num_workers=workers))
    split = next(s for s in (cohort.train, cohort.val, cohort.test) if 9 in s.rows.tolist())
    with pytest.raises(DataError) as exc:
        split.risks(lambda x: x.flatten(1).sum(1), torch.arange(len(split)))
    assert str(exc.value).startswith(f"{manifest} row 10 (cut.png): corrupt or truncated image")
    assert "\n" not in str(exc.value)
    assert _refusal(images(manifest, verify="full")).startswith(f"{manifest} row 10 (cut.png): corrupt or truncated")


# ------------------------------------------------------------------ the built-in transforms, against references
def test_builtin_transforms_against_references() -> None:
    x = torch.from_numpy(np.random.default_rng(0).random((2, 16, 12)).astype(np.float32))
    for size, pil in ((8, (8, 8)), ([10, 6], (6, 10))):  # Pillow's bilinear resize (antialiased) as the reference
        ref = np.stack([np.asarray(Image.fromarray(c, mode="F").resize(pil, Image.BILINEAR)) for c in x.numpy()])
        np.testing.assert_allclose(Resize(size)(x).numpy(), ref, atol=2e-6)
    torch.testing.assert_close(CenterCrop(4)(x), x[:, 6:10, 4:8])
    torch.testing.assert_close(CenterCrop([5, 3])(x), x[:, 5:10, 4:7])
    torch.testing.assert_close(Normalize([0.5, 0.25], [2.0, 0.5])(x),
                               torch.stack([(x[0] - 0.5) / 2.0, (x[1] - 0.25) / 0.5]))
    torch.testing.assert_close(RandomFlip(p=1.0, dims=[-1, -2])(x), torch.flip(x, [-1, -2]))
    torch.testing.assert_close(RandomFlip(p=0.0)(x), x)
    padded = torch.nn.functional.pad(x, [2, 2, 2, 2])
    for seed in range(20):
        torch.manual_seed(seed)
        out = RandomCrop([16, 12], padding=2)(x)
        windows = [padded[:, i:i + 16, j:j + 12] for i in range(5) for j in range(5)]
        assert any(torch.equal(out, w) for w in windows)
    volume = torch.ones(1, 4, 6, 6)  # 3-D: trilinear keeps a constant volume constant
    torch.testing.assert_close(Resize(3)(volume), torch.ones(1, 3, 3, 3))
    for bad in (lambda: Normalize([0.0], [0.0]), lambda: RandomFlip(dims=[1]), lambda: Resize(0)):
        with pytest.raises(ValueError):
            bad()
