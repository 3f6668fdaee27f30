"""The app's Trainer under torchrun on a CSV cohort: which rows each rank holds, then the run (issue 27, item 5).

Arguments: the output folder and the cohort file. Each rank writes ``rank<R>.json``: the rows of
every split it holds inputs for, the bytes of those inputs, and the run's metrics; rank 0's run
dir is ``<out>/run``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import _common as C


def main(out: Path) -> dict:
    from hydra import compose, initialize_config_module

    from survopt_hydra.app.trainer import Trainer, train

    with initialize_config_module("survopt_hydra.app.train_conf", version_base="1.3"):
        cfg = compose("train", overrides=["data=csv", f"data.path={sys.argv[2]}", "distributed=ddp",
                                          "trainer.max_epochs=3", "trainer.progress_bar=false"])
    trainer = Trainer(cfg, out / "run")
    c = trainer.cohort
    held = {name: {"rows": split.rows.tolist(), "x_bytes": split.x.numel() * split.x.element_size(),
                   "n": len(split), "local_rows": len(trainer.train_rows) if name == "train" else None}
            for name, split in (("train", c.train), ("val", c.val), ("test", c.test))}
    box = [trainer]
    del trainer, c  # train() releases the DDP model before the process group: hold no reference to it here
    metrics = train(cfg, out / "run", box.pop())
    return {"held": held, "metrics": metrics}


C.run(main)
