"""integrity.checksum: the JSON form detects every kind of change; older (walk) checksums still verify."""
from __future__ import annotations

import math

import pytest
import torch

from survopt_hydra import integrity
from survopt_hydra.integrity import CHECKSUM_KEY, checksum, intact, matches, with_checksum


def _state() -> dict:
    gen = torch.Generator().manual_seed(0)
    return {"model": {"w": torch.randn(3, 2, generator=gen), "b": torch.zeros(2, dtype=torch.float16)},
            "progress": {"epoch": 4, "history": [{"epoch": 1, "val": 0.61, "loss": math.nan}], "done": False},
            "rng": {"python": (3, tuple(range(5)), None)}, "opt": {"state": {0: {"step": torch.tensor(3.0)}}}}


@pytest.mark.parametrize("change", [
    lambda s: s["model"]["w"].view(-1)[0].add_(1e-6),                       # one tensor element
    lambda s: s["model"].__setitem__("b", s["model"]["b"].float()),         # a dtype
    lambda s: s["model"].__setitem__("w", s["model"]["w"].reshape(2, 3)),   # a shape, same bytes
    lambda s: s["progress"]["history"][0].__setitem__("val", 0.61 + 1e-15),  # a float's last bit
    lambda s: s["progress"].__setitem__("done", 0),                          # bool -> int
    lambda s: s["progress"].__setitem__("extra", None),                      # a new key
    lambda s: s["opt"]["state"][0].__setitem__("step", torch.tensor(4.0)),
])
def test_json_checksum_detects_each_kind_of_change(change) -> None:
    state = with_checksum(_state())
    assert state[CHECKSUM_KEY].startswith("j1:") and intact(state)
    change(state)
    assert not intact(state)


def test_checksums_in_the_older_walk_form_still_verify() -> None:
    state = _state()
    legacy = integrity._walk_digest(state)
    assert not legacy.startswith("j1:") and matches(state, legacy) and intact({**state, CHECKSUM_KEY: legacy})
    state["progress"]["epoch"] = 5
    assert not matches(state, legacy)


def test_keys_json_cannot_hold_fall_back_to_the_walk() -> None:
    state = {"pairs": {(1, 2): torch.ones(2)}}
    assert not checksum(state).startswith("j1:") and intact(with_checksum(state))


# ---------------------------------------------------------------- bounded reading (issue 25, item 1)
def _deflated(obj, path) -> None:
    """``torch.save(obj)`` with every zip member re-compressed (deflate): a valid torch file that inflates."""
    import io
    import zipfile

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, source.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)


def _no_torch_load(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be reached")

    monkeypatch.setattr(torch, "load", refuse)


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch) -> None:
    """64 MiB of zeros deflate to ~66 KB; torch.load would inflate them, the bounded reader refuses first."""
    from survopt_hydra.app.checkpoint import CheckpointError, load_checkpoint
    from survopt_hydra.integrity import UntrustedFileError, load_torch_file

    bomb = tmp_path / "bomb.pt"
    _deflated({"w": torch.zeros(2**24)}, bomb)
    assert bomb.stat().st_size < 200_000
    assert torch.load(bomb, weights_only=True)["w"].numel() == 2**24  # a real torch file: torch inflates it
    _no_torch_load(monkeypatch)
    with pytest.raises(UntrustedFileError, match=r"declare 671\d+ bytes uncompressed in a \d+-byte file.*decompression"):
        load_torch_file(bomb)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bomb)
    assert "refused before inflating it" in str(err.value) and "\n" not in str(err.value)


def test_an_expanded_tensor_is_refused_without_allocating(tmp_path, monkeypatch) -> None:
    """torch.zeros(1).expand(10**6, 10**6): 1.5 KB on disk, 4 TB once contiguous. Refused on its strides
    (metadata), before the checksum would copy it."""
    from survopt_hydra.app.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}}, path)  # a good checksummed file, then a forged one
    torch.save({"model": {"w": torch.zeros(1).expand(10**6, 10**6)}, "checksum": "j1:0"}, path)
    assert path.stat().st_size < 30_000
    monkeypatch.setattr(integrity, "_feed_tensor", lambda *a: pytest.fail("the checksum must not see it"))
    with pytest.raises(CheckpointError, match=r"non-contiguous tensor of shape \(1000000, 1000000\) with strides \(0, 0\)"):
        load_checkpoint(path)


def test_one_tensor_referenced_over_and_over_is_refused(tmp_path) -> None:
    """A 400 KB tensor referenced 2,000 times is 800 MB to hash (and to copy) from a ~410 KB file."""
    from survopt_hydra.integrity import UntrustedFileError, load_torch_file

    t = torch.ones(100_000)
    torch.save({"many": [t] * 2000}, tmp_path / "refs.pt")
    assert (tmp_path / "refs.pt").stat().st_size < 500_000
    with pytest.raises(UntrustedFileError, match="referenced over and over"):
        load_torch_file(tmp_path / "refs.pt")
    torch.save({"two": [t, t]}, tmp_path / "two.pt")  # the few shared references a checkpoint has (its RNG) pass
    assert load_torch_file(tmp_path / "two.pt")["two"][1].numel() == 100_000


@pytest.mark.parametrize("make, fragment", [
    (lambda p: torch.save({"w": torch.ones(3)}, p, _use_new_zipfile_serialization=False), "not a torch zip archive"),
    (lambda p: torch.save({"w": torch.ones(3).to_sparse()}, p), "only dense tensors"),
    (lambda p: torch.save({"w": torch.ones(3, dtype=torch.complex64)}, p), "only dense tensors"),
    (lambda p: torch.save(functools_reduce_nest(200), p), "nested deeper than 64 levels"),
])
def test_files_a_checkpoint_never_is_are_refused_in_one_line(tmp_path, make, fragment) -> None:
    from survopt_hydra.integrity import UntrustedFileError, load_torch_file

    make(tmp_path / "x.pt")
    with pytest.raises(UntrustedFileError) as err:
        load_torch_file(tmp_path / "x.pt")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def functools_reduce_nest(depth: int) -> list:
    nest: list = []
    for _ in range(depth):
        nest = [nest]
    return nest


def test_a_real_checkpoint_round_trips(tmp_path) -> None:
    """What the app writes (weights, an RNG state referenced twice, logs) passes every bound."""
    from survopt_hydra.app.checkpoint import load_checkpoint, save_checkpoint
    from survopt_hydra.durable import rng_state

    rng = rng_state()
    state = {"model": torch.nn.Linear(30, 20).state_dict(), "rng": rng, "rng_ranks": [rng],
             "progress": {"history": [{"epoch": i, "loss": 0.5} for i in range(500)]}}
    save_checkpoint(state, tmp_path / "last.pt")
    back = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(back["model"]["weight"], state["model"]["weight"]) and back["rng"]["numpy"]["pos"] == rng["numpy"]["pos"]


# ---------------------------------------------------------------- RNG states read from a file
def _rng_variants():
    from survopt_hydra.durable import rng_state

    def forged(change):
        state = rng_state()
        state["numpy"] = dict(state["numpy"])
        change(state)
        return state

    return [
        (forged(lambda s: s.__setitem__("torch", torch.zeros(7, dtype=torch.uint8))), "torch: expected a uint8 tensor"),
        (forged(lambda s: s.__setitem__("torch", s["torch"].float())), "torch: expected a uint8 tensor"),
        (forged(lambda s: s["numpy"].__setitem__("keys", torch.full((624,), 2**40))), "numpy.keys"),
        (forged(lambda s: s["numpy"].__setitem__("pos", 10**9)), "numpy: pos must be"),
        (forged(lambda s: s["numpy"].__setitem__("cached_gaussian", math.nan)), "numpy: pos must be"),
        (forged(lambda s: s.__setitem__("python", (3, (1,) * 10, None))), "python: expected"),
        (forged(lambda s: s.__setitem__("python", "x")), "python: expected"),
        ({"torch": 1}, "not an RNG state"),
    ]


def test_rng_states_a_run_never_writes_are_refused_before_use() -> None:
    from survopt_hydra.durable import rng_problem, rng_state, set_rng_state

    assert rng_problem(rng_state()) is None
    before = torch.get_rng_state()
    for state, fragment in _rng_variants():
        assert fragment in (rng_problem(state) or ""), fragment
        with pytest.raises(ValueError, match="^RNG state: "):
            set_rng_state(state)
    assert torch.equal(torch.get_rng_state(), before)  # nothing was half-set


# ---------------------------------------------------------------- writes: no links, modes (issue 25 item 2, 28 item 6)
def test_writes_never_follow_a_link(tmp_path) -> None:
    import errno
    import os

    from survopt_hydra.durable import nofollow_opener, truncate_file, write_text_atomic

    outside = tmp_path / "outside.txt"
    outside.write_text("x" * 6600)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("metrics.json", "monitors.csv"):
        (run / name).symlink_to(outside)
    with pytest.raises(OSError) as err:
        write_text_atomic("{}", run / "metrics.json")
    assert err.value.errno == errno.ELOOP and "symbolic link" in str(err.value)
    with pytest.raises(OSError, match="symbolic link"):
        truncate_file(run / "monitors.csv", 802)
    with pytest.raises(OSError, match="symbolic link"):
        open(run / "monitors.csv", "a", opener=nofollow_opener)
    assert outside.read_text() == "x" * 6600 and sorted(os.listdir(run)) == ["metrics.json", "monitors.csv"]


def test_truncate_never_extends_a_file(tmp_path) -> None:
    from survopt_hydra.durable import truncate_file

    path = tmp_path / "monitors.csv"
    path.write_bytes(b"a" * 100)
    truncate_file(path, 10**12)
    assert path.read_bytes() == b"a" * 100
    truncate_file(path, 40)
    assert path.read_bytes() == b"a" * 40
    truncate_file(tmp_path / "missing.csv", 0)
    assert not (tmp_path / "missing.csv").exists()


def test_results_follow_the_umask_and_checkpoints_stay_private(tmp_path) -> None:
    import os
    import stat

    from survopt_hydra.app.checkpoint import save_checkpoint
    from survopt_hydra.durable import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic("{}", tmp_path / "metrics.json")
        save_checkpoint({"w": torch.ones(1)}, tmp_path / "last.pt")
        os.umask(0o077)
        write_text_atomic("{}", tmp_path / "private.json")
    finally:
        os.umask(old)
    mode = lambda name: stat.S_IMODE((tmp_path / name).stat().st_mode)  # noqa: E731
    assert (mode("metrics.json"), mode("last.pt"), mode("private.json")) == (0o644, 0o600, 0o600)
