"""The library as other people's apps see it: what importing it pulls in, what it adds to Hydra."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules an app that only wants optimizer configs must not pay for (issue 14, item 1).
FORBIDDEN = ("survopt_hydra.app", "matplotlib", "lifelines", "pandas", "torch._dynamo",
             "torch.distributed.fsdp", "scipy")  # not tqdm: torch itself imports it when installed


@pytest.mark.slow
def test_importing_the_library_pulls_in_no_app_or_plotting_module():
    """A fresh interpreter (this one has imported everything already) imports the package, the
    builders and the opt-in config package and lists sys.modules; then builds an optimizer and a
    scheduler and lists them again (torch's own ``Optimizer.__init__`` imports torch._dynamo and
    with it FSDP, so those are only required of the imports)."""
    probe = (
        "import json, sys, torch\n"
        "import survopt_hydra, survopt_hydra.schemas, survopt_hydra.conf\n"
        "from survopt_hydra import build_optimizer, build_scheduler\n"
        "print(json.dumps(sorted(sys.modules)))\n"
        "opt = build_optimizer(torch.nn.Linear(2, 1), 'adamw')\n"
        "build_scheduler(opt, epochs=3, name='cosine')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    imported, built = (json.loads(line) for line in out.stdout.splitlines()[-2:])
    assert "survopt_hydra.optim.optimizer" in imported and "survopt_hydra.optim.optimizer" in built
    bad = [m for m in imported if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, bad
    bad = [m for m in built if any(m == f or m.startswith(f + ".") for f in FORBIDDEN if not f.startswith("torch"))]
    assert not bad, bad
