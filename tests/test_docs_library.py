"""The docs cannot drift from the code: option tables, commands, examples and quoted output.

* docs/library.md's option tables are rendered from the records; rewrite them after adding
  an option: ``python tests/test_docs_library.py``.
* Every ``scripts/train.py`` command in the README's shell blocks passes the app's own
  pre-flight (composition, every value, the data file, the run length), in-process.
* Every Python block of docs/factory_api.md runs, in order, as shown.
* The README quotes the last line the main command prints, exactly.
* docs/architecture.md's layer table is the one tests/test_imports.py enforces.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "library.md"
README = ROOT / "README.md"
FACTORY_DOC = ROOT / "docs" / "factory_api.md"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- options table: begin (python tests/test_docs_library.py) -->", "<!-- options table: end -->"


def render_tables() -> str:
    from survopt_hydra.schemas.optimizer import OPTIM_INFO
    from survopt_hydra.schemas.scheduler import SCHEDULERS

    rows = ["| `optimizer=` | builds | fused | foreach | notes |", "|---|---|---|---|---|"]
    for name, info in OPTIM_INFO.items():
        builds = "`MuonWithAdamW` (torch `Muon` + `AdamW`)" if info.recipe == "muon" else f"`{info.module}.{info.cls}`"
        notes = info.doc + ("; the engine and the app refuse it" if info.closure else "")
        notes += f"; needs `pip install \"survopt-hydra[{info.extra}]\"` ({info.package})" if info.package else ""
        rows.append(f"| `{name}` | {builds} | {'yes' if info.fused else ''} | {'yes' if info.foreach else ''} | {notes} |")
    rows.append("| `custom` | `optimizer.cls` (any `torch.optim.Optimizer` subclass) | | | "
                "`+optimizer.kwargs.<k>=<v>`, checked against its signature |")
    rows += ["", "| `scheduler=` | builds (`torch.optim.lr_scheduler`) | needs run length | own warmup |",
             "|---|---|---|---|"]
    for name, schema in SCHEDULERS.items():
        rows.append(f"| `{name}` | {schema.torch_class} | {'yes' if schema.needs_run_length else ''} | "
                    f"{'yes' if schema.own_warmup else ''} |")
    return "\n".join(rows)


def test_library_doc_tables_match_the_records():
    text = DOC.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block == render_tables(), "run: python tests/test_docs_library.py"


# ------------------------------------------------------------------ README commands


def train_commands(text: str) -> list[tuple[list[str], bool]]:
    """(overrides, multirun) of every ``survopt-train`` / ``scripts/train.py`` call in the ```bash blocks of ``text``.

    A torchrun line is checked as one process would be (``distributed.allow_single_process``)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            at = next((i for i, w in enumerate(words) if w.endswith("scripts/train.py") or w == "survopt-train"), None)
            if at is None:
                continue
            args = []
            for word in words[at + 1:]:
                if word in ("&&", "||", "|", ";"):
                    break
                args.append(word)
            overrides = [a for a in args if a not in ("-m", "--multirun")]
            if words[0] == "torchrun":
                overrides.append("distributed.allow_single_process=true")
            found.append((overrides, "-m" in args or "--multirun" in args))
    return found


README_COMMANDS = train_commands(README.read_text())


def test_the_command_extractor_sees_the_readme_commands():
    """Guards the check below: the README's main command, a sweep and a torchrun line are found."""
    assert len(README_COMMANDS) >= 10
    assert ([], False) in README_COMMANDS  # the main command
    assert any(multirun for _, multirun in README_COMMANDS)
    assert any("distributed.allow_single_process=true" in o for o, _ in README_COMMANDS)


@pytest.fixture(scope="module")
def readme_scans(tmp_path_factory) -> Path:
    """A folder where the README's image commands find what its earlier lines make: ``scans/`` as
    ``scripts/synthetic_scans.py scans --n 400 --signal area`` writes it."""
    from survopt_hydra.app.synthetic_scans import write_synthetic_scans

    folder = tmp_path_factory.mktemp("readme")
    write_synthetic_scans(folder / "scans", 400, signal="area")
    return folder


@pytest.fixture(scope="module")
def readme_cohort(tmp_path_factory) -> Path:
    """A folder holding ``cohort.parquet`` as the README's ``make_cohort.py cohort.parquet`` line writes it
    (10,000 patients here instead of 10^6: the check is of the command, not of the size)."""
    folder = tmp_path_factory.mktemp("readme_cohort")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_cohort.py"), str(folder / "cohort.parquet"), "--n",
                    "10000"], check=True, capture_output=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("overrides,multirun", README_COMMANDS, ids=[" ".join(o) or "default" for o, _ in README_COMMANDS])
def test_readme_train_commands_pass_the_preflight(overrides, multirun, request, monkeypatch):
    from survopt_hydra.app.preflight import check_command

    if "data=images" in overrides:  # run where the README's synthetic_scans.py line put scans/, with its PYTHONPATH
        monkeypatch.chdir(request.getfixturevalue("readme_scans"))
        monkeypatch.syspath_prepend(str(ROOT / "tests" / "user_code"))
    if "data.path=cohort.parquet" in overrides:  # run where the README's make_cohort.py line wrote it
        monkeypatch.chdir(request.getfixturevalue("readme_cohort"))
    assert check_command(overrides, multirun) >= 1


@pytest.mark.slow
def test_the_preflight_check_refuses_a_bad_readme_style_command():
    """The check above can fail: a misspelt option is refused the same way."""
    from survopt_hydra.app.preflight import check_command
    from survopt_hydra.errors import ConfigError

    with pytest.raises(ConfigError, match="adamx"):
        check_command(["optimizer=adamx"])


# ------------------------------------------------------------------ factory_api.md examples


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of ``text``, without those marked ``<!-- not run: ... -->``."""
    return [code for skip, code in re.findall(r"(<!-- not run[^>]*-->\n)?```python\n(.*?)```", text, re.S) if not skip]


@pytest.mark.slow  # builds a dozen optimizers: the first one imports torch._dynamo (seconds)
def test_factory_api_examples_run_as_shown():
    blocks = python_blocks(FACTORY_DOC.read_text())
    assert len(blocks) >= 8
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{FACTORY_DOC.name}, python block {i + 1}", "exec"), namespace)
    import torch

    assert type(namespace["optimizer"]) is torch.optim.AdamW  # the last one built: the YAML training block
    assert namespace["mp_optimizer"].param_groups[0]["lr"] == 1e-4


def test_factory_api_doc_names_every_factory_export():
    text = FACTORY_DOC.read_text()
    for name in ("create_optimizer", "create_scheduler", "create_optimizer_and_scheduler", "OptimizerFactory",
                 "GradientClipper", "OptimizerMonitor", "GradientMonitor", "MixedPrecisionOptimizer",
                 "DistributedOptimizer"):
        assert f"from survopt_hydra import {name}" in text or f", {name}" in text, name


# ------------------------------------------------------------------ quoted output


#: How far a figure may move between x86 CPU families (AMD EPYC vs Intel Xeon round floats differently in
#: 20 epochs of training: 0.6182 vs 0.6183 measured); the README states the same tolerance.
README_TOLERANCE = 0.002


def _figures(line: str) -> dict[str, float]:
    """The numbers of the final line: test C-index, its interval if any, best epoch, val C-index."""
    found = {"test": re.search(r"test C-index: ([0-9.]+)", line), "val": re.search(r"val C-index ([0-9.]+)", line),
             "epoch": re.search(r"best epoch (\d+)", line)}
    assert all(found.values()), line
    return {k: float(m.group(1)) for k, m in found.items()}


@pytest.mark.slow
def test_readme_quotes_the_last_line_of_the_main_command(tmp_path):
    """The README's quoted line is the run's, figure for figure within README_TOLERANCE (stated there too)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={tmp_path / 'run'}",
                           "trainer.progress_bar=false"], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    assert last.startswith("test C-index: ")
    readme = README.read_text()
    quoted = [q for q in re.findall(r"```text\n(.*?)\n```", readme, re.S) if q.startswith("test C-index: ")]
    assert len(quoted) == 1, quoted
    got, want = _figures(last), _figures(quoted[0])
    assert re.sub(r"[0-9.]+", "#", last) == re.sub(r"[0-9.]+", "#", quoted[0]), (last, quoted[0])  # same wording
    assert abs(got["test"] - want["test"]) <= README_TOLERANCE and abs(got["val"] - want["val"]) <= README_TOLERANCE
    assert f"{README_TOLERANCE:g}" in readme  # the README says how far its figures may move


def doc_layers(text: str) -> list[set[str]]:
    """The module names of architecture.md's layer table (rows ``| <n> <name> | `a`, `b` | ... |``), bottom first."""
    rows = re.findall(r"^\| (\d) [a-z]+ \| ([^|]+) \|", text, re.M)
    by_number = {int(n): set(re.findall(r"`([a-z_]+)`", modules)) for n, modules in rows}
    return [by_number[n] for n in sorted(by_number)]


def test_architecture_doc_layers_are_the_enforced_ones():
    from test_imports import LAYERS  # tests/ is on sys.path (rootdir conftest)

    documented = doc_layers(ARCHITECTURE_DOC.read_text())
    assert len(documented) == len(LAYERS) == 7
    assert documented == [set(layer) for layer in LAYERS]


if __name__ == "__main__":
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n{render_tables()}\n{END}{rest.split(END, 1)[1]}")
    sys.exit(0)
