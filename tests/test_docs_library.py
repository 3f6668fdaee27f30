"""docs/library.md's option tables are rendered from the records, so they cannot drift.

Rewrite them after adding an option: ``python tests/test_docs_library.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"
BEGIN, END = "<!-- options table: begin (python tests/test_docs_library.py) -->", "<!-- options table: end -->"


def render_tables() -> str:
    from survopt_hydra.config.optimizer import OPTIM_INFO
    from survopt_hydra.config.scheduler import SCHEDULERS

    rows = ["| `optimizer=` | builds | fused | foreach | notes |", "|---|---|---|---|---|"]
    for name, info in OPTIM_INFO.items():
        builds = "`MuonWithAdamW` (torch `Muon` + `AdamW`)" if info.recipe == "muon" else f"`torch.optim.{info.cls}`"
        notes = info.doc + ("; the engine and the app refuse it" if info.closure else "")
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


if __name__ == "__main__":
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n{render_tables()}\n{END}{rest.split(END, 1)[1]}")
    sys.exit(0)
