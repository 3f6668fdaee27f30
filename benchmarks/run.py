"""Run the survopt_hydra benchmark suite and write ``benchmarks/results/<machine-tag>.{json,md}``.

    python benchmarks/run.py            # everything (a few minutes)
    python benchmarks/run.py --quick    # tiny sizes, no app/peers (the smoke test: < 30 s)

Each module below exposes ``run(quick: bool = False) -> dict``; this runner calls them
in turn, takes the headline figures (``FIGURES``) from their dicts, checks them against
``TARGETS`` and writes one JSON file (machine, date, figures, targets, met, every
module's full details, how busy the machine was meanwhile) and a Markdown table that
``benchmarks/README.md`` includes between its ``results`` markers.  When the output
file already holds an earlier full run of the same machine, the new file also records
that run's figures and the relative change of each (``reproducibility``).

Modules owned elsewhere (``bench_agc``, ``bench_monitors``) are optional: when one
cannot be imported its figures read ``skipped: not available``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib
import importlib.util
import subprocess
import json
import math
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
README = HERE / "README.md"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# module -> headline figures it provides (in report order)
MODULES: dict[str, tuple[str, ...]] = {
    "bench_startup": ("import_overhead_s", "compose_instantiate_ms", "compose_instantiate_cold_ms"),
    "bench_optim": (
        "adamw_default_fraction_of_triad",
        "adamw_forloop_fraction_of_triad",
        "adamw_foreach_fraction_of_triad",
        "sgd_default_fraction_of_triad",
    ),
    "bench_engine": ("engine_over_raw_ratio", "engine_over_guarded_raw_ratio", "ema_over_engine_ratio"),
    "bench_peers": ("peer_mmengine_step_ratio", "peer_lightning_step_ratio", "peer_timm_step_ratio"),
    "bench_agc": ("agc_speedup",),
    "bench_monitors": ("monitor_overhead_fraction",),
    "bench_app": ("app_train_seconds", "time_to_cindex_s"),
    "bench_sweep": ("default_run_wall_s", "torch_floor_s", "default_run_overhead_s", "sweep6_sequential_wall_s",
                    "sweep6_parallel_wall_s", "parallel_sweep_speedup", "sweep_job_overhead_s"),
}
QUICK_SKIP = {"bench_peers", "bench_app", "bench_sweep"}
OWNED_ELSEWHERE = {"bench_agc", "bench_monitors"}

# key -> (comparison, value); figures without an entry are informational
TARGETS: dict[str, tuple[str, float]] = {
    "adamw_default_fraction_of_triad": (">=", 0.8),
    "engine_over_raw_ratio": ("<=", 1.02),
    "engine_over_guarded_raw_ratio": ("<=", 1.02),
    "import_overhead_s": ("<=", 0.15),
    "compose_instantiate_ms": ("<=", 50.0),
    "agc_speedup": (">=", 3.0),
    "monitor_overhead_fraction": ("<=", 0.01),
    "default_run_wall_s": ("<=", 2.5),
    "default_run_overhead_s": ("<=", 0.5),
    "sweep6_parallel_wall_s": ("<=", 4.0),
    "sweep_job_overhead_s": ("<=", 0.3),
}
DESCRIPTIONS: dict[str, str] = {
    "import_overhead_s": "`from survopt_hydra import create_optimizer` after `import torch` (s)",
    "compose_instantiate_ms": "compose `train.yaml` + instantiate optimizer and scheduler, warm (ms)",
    "compose_instantiate_cold_ms": "the same, first call in a fresh interpreter (ms)",
    "adamw_default_fraction_of_triad": "AdamW as `build_optimizer` builds it (fused), 25M params, / triad bandwidth",
    "adamw_forloop_fraction_of_triad": "AdamW, torch's CPU default (for-loop), / triad bandwidth",
    "adamw_foreach_fraction_of_triad": "AdamW, foreach, / triad bandwidth",
    "sgd_default_fraction_of_triad": "SGD momentum as `build_optimizer` builds it (fused), / triad bandwidth",
    "engine_over_raw_ratio": "default app step through `StepEngine` / hand-written loop without a non-finite guard",
    "engine_over_guarded_raw_ratio": "the same / a hand-written loop that also skips non-finite steps (the same work)",
    "ema_over_engine_ratio": "the same step with `ema=ema` (AveragedModel update every step) / without",
    "peer_mmengine_step_ratio": "MMEngine `OptimWrapper` step / our step (>1: peer slower)",
    "peer_lightning_step_ratio": "Lightning manual-optimization step / our step (>1: peer slower)",
    "peer_timm_step_ratio": "timm `create_optimizer_v2` step / our step",
    "agc_speedup": "per-parameter AGC loop / vectorised `adaptive_clip_grad_`",
    "monitor_overhead_fraction": "extra step time with the optimizer/gradient monitors on",
    "app_train_seconds": "default app, `train_seconds` from metrics.json (s)",
    "time_to_cindex_s": "default app, time until val C-index is within 0.005 of its final value (s)",
    "default_run_wall_s": "`python scripts/train.py`, whole process, median (s)",
    "torch_floor_s": "a fresh `python -c` that imports torch and takes one AdamW step: any torch script's start (s)",
    "default_run_overhead_s": "default run's wall time beyond the torch floor and its training (s)",
    "sweep6_sequential_wall_s": "6-job gbsg2 LR sweep, basic launcher, whole process (s)",
    "sweep6_parallel_wall_s": "the same sweep with `hydra/launcher=survopt_parallel` (s)",
    "parallel_sweep_speedup": "sequential / parallel wall time of that sweep",
    "sweep_job_overhead_s": "per job of the sequential sweep: wall time beyond `train_seconds` (s)",
}
REPRO_TOLERANCE = 0.10


# ---------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_tag(model: str, cores: int) -> str:
    slug = re.sub(r"\((r|tm)\)|cpu|processor|@.*$", "", model.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", slug).strip("-") or "cpu"
    return f"{slug}-{cores}c"


def machine_info() -> dict[str, Any]:
    import torch

    model = cpu_model()
    cores = os.cpu_count() or 1
    return {
        "cpu": model,
        "cores": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tag": machine_tag(model, cores),
    }


class ForeignLoad:
    """Share of the machine's CPU time used by *other* processes over an interval.

    From /proc/stat (all busy time) minus this process's and its waited-for children's
    CPU time; 0 = this suite had the machine to itself, 1 = other jobs kept every core
    busy.  The benchmarks are built to cancel load out, but this says how much there was.
    """

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.monotonic(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return None
        vals = [float(v) for v in fields]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)  # idle + iowait
        return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def fraction(self) -> float | None:
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.monotonic() - self.t0
        foreign = (busy - self.busy0) - (self._own() - self.own0)
        return round(max(0.0, foreign) / (wall * (os.cpu_count() or 1)), 3) if wall > 0 else None


# ---------------------------------------------------------------------- running
def wait_for_quiet(max_wait: float, threshold: float = 0.25, window: float = 2.0) -> dict[str, Any]:
    """Wait (at most ``max_wait`` s) until other processes use < ``threshold`` of the CPU.

    On a shared machine this lowers the odds that a module starts inside someone
    else's burst of work; it never blocks for longer than ``max_wait``.
    """
    t0 = time.monotonic()
    load = None
    while True:
        probe = ForeignLoad()
        time.sleep(window)
        load = probe.fraction()
        waited = time.monotonic() - t0
        if load is None or load < threshold or waited >= max_wait:
            return {"waited_s": round(waited, 1), "foreign_cpu_load_at_start": load}


def _run_isolated(name: str, quick: bool) -> dict[str, Any]:
    """``module.run(quick)`` in a fresh interpreter: thread settings, allocator state and
    lazily imported torch modules of one benchmark must not skew the next one."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import importlib; "
        f"d = importlib.import_module({name!r}).run(quick={quick!r}); "
        "print('__RESULT__' + json.dumps(d, default=str))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
                          capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("__RESULT__"):
            return json.loads(line[len("__RESULT__"):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return {"skipped": f"skipped: error: {tail}", "traceback": proc.stderr.splitlines()[-6:]}


def run_module(name: str, quick: bool, skip: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(details, figures) of one module; failures become ``skipped: ...`` figures."""
    keys = MODULES[name]
    if skip:
        return {"skipped": "skipped: --skip"}, {k: "skipped: --skip" for k in keys}
    if quick and name in QUICK_SKIP:
        return {"skipped": "skipped: --quick"}, {k: "skipped: --quick" for k in keys}
    if importlib.util.find_spec(name) is None:
        why = "skipped: not available" if name in OWNED_ELSEWHERE else f"skipped: import failed (no module {name})"
        return {"skipped": why}, {k: why for k in keys}
    load = ForeignLoad()
    t0 = time.perf_counter()
    details = _run_isolated(name, quick)
    details["_seconds"] = round(time.perf_counter() - t0, 2)
    details["_foreign_cpu_load"] = load.fraction()
    figures = {}
    for k in keys:
        if k in details:
            figures[k] = details[k]
        else:
            figures[k] = details.get("skipped", f"skipped: {name} did not report {k}")
    return details, figures


def check(value: Any, target: tuple[str, float] | None) -> bool | None:
    if target is None or not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    op, bound = target
    return value >= bound if op == ">=" else value <= bound


def reproducibility(prev: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"previous_date": prev.get("date"), "tolerance": REPRO_TOLERANCE, "figures": {}}
    for k, v in figures.items():
        p = prev.get("figures", {}).get(k)
        if isinstance(v, (int, float)) and isinstance(p, (int, float)) and p:
            rel = (v - p) / abs(p)
            out["figures"][k] = {"previous": p, "current": v, "rel_change": round(rel, 4),
                                 "within_tolerance": abs(rel) <= REPRO_TOLERANCE}
    flags = [f["within_tolerance"] for f in out["figures"].values()]
    out["all_within_tolerance"] = all(flags) if flags else None
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "**no**", None: "-"}[v]
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "/")


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Machine `{m['tag']}`: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads, {m['cpu_capability']}), Python {m['python']}; "
        f"{result['date']}{' (quick)' if result['quick'] else ''}; other jobs used "
        f"{_fmt(result['foreign_cpu_load'])} of the CPU meanwhile.",
        "",
    ]
    repro = result.get("reproducibility", {}).get("figures", {})
    head = "| figure | value | target | met |" + (" previous run | change |" if repro else "")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for k, v in result["figures"].items():
        t = result["targets"].get(k)
        row = f"| `{k}` | {_fmt(v)} | {t[0] + ' ' + _fmt(t[1]) if t else ''} | {_fmt(result['met'].get(k))} |"
        if repro:
            r = repro.get(k)
            row += f" {_fmt(r['previous'])} | {r['rel_change']:+.1%} |" if r else " | |"
        lines.append(row)
    lines += ["", "What each figure measures: " + "; ".join(
        f"`{k}`: {DESCRIPTIONS[k]}" for k in result["figures"] if k in DESCRIPTIONS) + "."]
    return "\n".join(lines) + "\n"


def update_readme(md: str, json_name: str) -> None:
    """Replace the block between the README's results markers with ``md``."""
    if not README.is_file():
        return
    text = README.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start not in text or end not in text:
        return
    block = f"{start}\n<!-- written by benchmarks/run.py from results/{json_name}; do not edit -->\n{md}{end}"
    README.write_text(text[: text.index(start)] + block + text[text.index(end) + len(end):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, skip the app and the peers")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where <tag>.json/.md go")
    parser.add_argument("--tag", help="file name stem instead of the machine tag")
    parser.add_argument("--only", nargs="+", choices=list(MODULES), help="run only these modules")
    parser.add_argument("--quiet-wait", type=float, default=None, metavar="S",
                        help="before each module wait up to S s for other jobs to go quiet (default: 60, 0 with --quick)")
    parser.add_argument("--skip", nargs="+", choices=list(MODULES), default=[],
                        help="do not run these modules (their figures read 'skipped: --skip')")
    args = parser.parse_args(argv)

    machine = machine_info()
    tag = args.tag or machine["tag"] + ("-quick" if args.quick else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out_dir / f"{tag}.json", args.out_dir / f"{tag}.md"
    previous = None
    if json_path.is_file():
        try:
            previous = json.loads(json_path.read_text())
        except ValueError:
            previous = None

    load = ForeignLoad()
    started = time.perf_counter()
    details: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    for name in args.only or MODULES:
        print(f"[run] {name} ...", flush=True)
        quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 60.0)
        gate = wait_for_quiet(quiet_wait) if quiet_wait > 0 and name not in args.skip else None
        details[name], figs = run_module(name, args.quick, skip=name in args.skip)
        if gate:
            details[name]["_quiet_gate"] = gate
        figures.update(figs)
        print(f"[run] {name}: {figs} ({details[name]['_seconds'] if '_seconds' in details[name] else 0} s)",
              flush=True)

    result: dict[str, Any] = {
        "suite": "survopt_hydra benchmarks",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "seconds": round(time.perf_counter() - started, 1),
        "foreign_cpu_load": load.fraction(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "figures": figures,
        "targets": {k: list(v) for k, v in TARGETS.items() if k in figures},
        "met": {k: check(v, TARGETS.get(k)) for k, v in figures.items()},
        "details": details,
    }
    if previous and previous.get("quick") == args.quick and previous.get("machine", {}).get("tag") == machine["tag"]:
        result["reproducibility"] = reproducibility(previous, figures)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(json_path)
    md = markdown(result)
    md_path.write_text(md)
    if not args.quick and args.out_dir.resolve() == RESULTS.resolve() and not (args.only or args.skip):
        update_readme(md, json_path.name)
    print(md)
    print(f"[run] wrote {json_path} and {md_path} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
