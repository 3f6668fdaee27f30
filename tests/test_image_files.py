"""Reading one image file (app/image_files.py): values against Pillow/numpy/nibabel's own reads, and every
refusal as one line naming the file, checked on files the tests write (real PNG, JPEG, .npy, NIfTI)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from survopt_hydra.app.image_files import probe, read
from survopt_hydra.survival.data import DataError

BIG = 2**26
LABEL = "m.csv row 3 (x)"


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith(LABEL), text
    return text


def test_png_8bit_gray_rgb_and_16bit_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (7, 9), dtype=np.uint16)
    g, c, d = _png(tmp_path / "g.png", gray), _png(tmp_path / "c.png", rgb), _png(tmp_path / "d.png", deep)
    assert probe(LABEL, g, "L", BIG) == (1, 7, 9) and probe(LABEL, c, "RGB", BIG) == (3, 7, 9)
    np.testing.assert_array_equal(read(LABEL, g, "L", BIG), gray[None] / np.float32(255))
    np.testing.assert_array_equal(read(LABEL, c, "RGB", BIG), np.moveaxis(rgb, -1, 0) / np.float32(255))
    np.testing.assert_allclose(read(LABEL, d, "L", BIG), deep[None] / 65535.0, rtol=0, atol=1e-7)
    # an RGB file read as L: Pillow's own ITU-R 601 conversion
    expected = np.asarray(Image.open(c).convert("L"), dtype=np.float32)[None] / 255
    np.testing.assert_array_equal(read(LABEL, c, "L", BIG), expected)
    # a gray file read as RGB: three equal channels
    three = read(LABEL, g, "RGB", BIG)
    assert three.shape == (3, 7, 9) and (three == three[:1]).all()


def test_jpeg_reads_as_pillow_decodes_it(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / "a.jpg"
    Image.fromarray(array).save(path, quality=90)
    np.testing.assert_array_equal(read(LABEL, path, "RGB", BIG),
                                  np.moveaxis(np.asarray(Image.open(path), dtype=np.float32), -1, 0) / 255)


def test_npy_layouts_and_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for shape, layout in (((5, 6), (1, 5, 6)), ((2, 5, 6), (2, 5, 6)), ((1, 3, 5, 6), (1, 3, 5, 6))):
        for dtype in (np.float64, np.int16, np.uint8, np.bool_):
            array = (rng.normal(size=shape) * 50).astype(dtype)
            path = tmp_path / f"a{len(shape)}{np.dtype(dtype).name}.npy"
            np.save(path, array)
            assert probe(LABEL, path, "L", BIG) == layout
            np.testing.assert_array_equal(read(LABEL, path, "L", BIG), array.reshape(layout).astype(np.float32))
    fortran = np.asfortranarray(rng.normal(size=(4, 5)).astype(np.float32))
    np.save(tmp_path / "f.npy", fortran)
    np.testing.assert_array_equal(read(LABEL, tmp_path / "f.npy", "L", BIG), fortran[None])


def test_nifti_when_nibabel_is_installed(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel", reason="NIfTI support needs nibabel (the images extra)")
    rng = np.random.default_rng(3)
    volume = rng.normal(size=(6, 7, 5)).astype(np.float32)
    for name in ("v.nii", "v.nii.gz"):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / name)
        assert probe(LABEL, tmp_path / name, "L", BIG) == (1, 6, 7, 5)
        np.testing.assert_array_equal(read(LABEL, tmp_path / name, "L", BIG), volume[None])
    four = rng.normal(size=(4, 4, 3, 2)).astype(np.float32)  # (X, Y, Z, channels) -> (channels, X, Y, Z)
    nib.save(nib.Nifti1Image(four, np.eye(4)), tmp_path / "c.nii")
    np.testing.assert_array_equal(read(LABEL, tmp_path / "c.nii", "L", BIG), np.moveaxis(four, -1, 0))
    # scaled integers: nibabel's scl_slope/scl_inter applied, as nibabel itself reads them
    img = nib.Nifti1Image(rng.integers(0, 100, (4, 4, 2)).astype(np.int16), np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, tmp_path / "s.nii")
    np.testing.assert_allclose(read(LABEL, tmp_path / "s.nii", "L", BIG)[0],
                               nib.load(tmp_path / "s.nii").get_fdata(), rtol=1e-6)
    (tmp_path / "t.nii").write_bytes((tmp_path / "v.nii").read_bytes()[:400])  # header whole, voxels cut
    with pytest.raises(DataError) as exc:
        probe(LABEL, tmp_path / "t.nii", "L", BIG)
    assert "truncated" in _one_line(exc)


def test_truncated_png_passes_the_header_check_and_fails_when_read(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 256, (64, 64), dtype=np.uint8)
    whole = _png(tmp_path / "w.png", data).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[: len(whole) // 2])
    assert probe(LABEL, cut, "L", BIG) == (1, 64, 64)  # the header is intact: found when first decoded
    with pytest.raises(DataError) as exc:
        read(LABEL, cut, "L", BIG)
    assert "corrupt or truncated image" in _one_line(exc)


@pytest.mark.parametrize("case, expect", [
    ("empty", "is empty (0 bytes)"),
    ("missing", "file not found"),
    ("directory", "is not a regular file"),
    ("suffix", "unknown image format '.bmp'"),
    ("not_png", "not a PNG file"),
    ("jpeg_as_png", "not a PNG file"),
    ("npy_object", "is not numeric"),
    ("npy_5d", "has 5 dimension(s)"),
    ("npy_truncated", "header promises"),
    ("npy_garbage", "not a readable .npy file"),
])
def test_bad_files_are_one_line_naming_the_row(tmp_path: Path, case: str, expect: str) -> None:
    path = tmp_path / {"suffix": "a.bmp", "npy_object": "a.npy", "npy_5d": "a.npy", "npy_truncated": "a.npy",
                       "npy_garbage": "a.npy", "directory": "d.png"}.get(case, "a.png")
    if case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    elif case == "suffix":
        path.write_bytes(b"BM....")
    elif case == "not_png":
        path.write_text("hello, not an image")
    elif case == "jpeg_as_png":  # Pillow may open only the format the suffix names, never another plugin
        buf = io.BytesIO()
        Image.new("L", (4, 4)).save(buf, "JPEG")
        path.write_bytes(buf.getvalue())
    elif case == "npy_object":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif case == "npy_5d":
        np.save(path, np.zeros((1, 1, 2, 2, 2)))
    elif case == "npy_truncated":
        np.save(path, np.zeros((64, 64)))
        path.write_bytes(path.read_bytes()[:300])
    elif case == "npy_garbage":
        path.write_bytes(b"\x93NUMPY\x01\x00" + b"\xff" * 20)
    for reader in (probe, read):
        with pytest.raises(DataError) as exc:
            reader(LABEL, path, "L", BIG)
        assert expect in _one_line(exc), str(exc.value)


def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    """A small file whose header claims a huge image: data.max_pixels refuses it, and Pillow's own limit
    (a warning above 89M pixels) is an error too, so nothing that large is ever decoded."""
    bomb, bigger = tmp_path / "bomb.png", tmp_path / "bigger.png"
    Image.new("1", (9_000, 9_000)).save(bomb)  # 81M pixels in a few kB
    Image.new("1", (10_000, 10_000)).save(bigger)  # 100M: over Pillow's 89M too
    assert bomb.stat().st_size < 200_000 and bigger.stat().st_size < 200_000
    for reader in (probe, read):
        with pytest.raises(DataError) as exc:
            reader(LABEL, bomb, "L", BIG)
        assert "9000x9000 = 81,000,000 values is over data.max_pixels=67,108,864 (a decompression bomb?)" in \
            _one_line(exc)
        with pytest.raises(DataError) as exc:  # our bound lifted: Pillow's (89M pixels) still refuses it
            reader(LABEL, bigger, "L", 10**9)
        assert "refused by Pillow's decompression-bomb limit" in _one_line(exc)
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((1, 300, 300), dtype=np.uint8))
    with pytest.raises(DataError) as exc:
        probe(LABEL, big, "L", 50_000)
    assert "1x300x300 = 90,000 values is over data.max_pixels=50,000" in _one_line(exc)
