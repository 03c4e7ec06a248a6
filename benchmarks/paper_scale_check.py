#!/usr/bin/env python3
"""Paper-scale readiness: time one ``paper``-config EP epoch and run every ephw command once on a device.

Run it first on a new machine (a CUDA one above all), before a long job:

    PYTHONPATH=/path/to/repo python benchmarks/paper_scale_check.py --device cuda --out DIR

Nothing is installed and ``make`` is not needed: ephw is imported from the checkout (this file's
parent folder; ``PYTHONPATH`` makes the same choice for the commands run here), and every command
is a subprocess ``python -m ephw ...`` of the same interpreter. It needs torch and ephw's
dependencies (pyproject.toml) in that interpreter; a command whose optional module is missing is
skipped with the reason.

1. **EP epoch timing** (in this process). ``--budget full``: the settings ``ephw reproduce cifar10
   --budget gpu`` trains its EP-CNN with (its first ``train ep`` command, parsed by ephw's own
   command line over ``CIFAR_DEFAULTS``: config, batch size, free/nudged phases, ``--nudging``,
   ``--free-init``, ``--tol``, backend), so the timing follows whatever that recipe becomes
   (``--recipe cifar-defaults`` or a named recipe of ``ephw.bench.recipes`` instead). One warm-up
   batch, then ``--batches`` timed training batches (augmentation, the phases, the EP gradient and
   the SGD update, as ``ephw train ep`` does them) on synthetic CIFAR-sized images; one epoch of
   CIFAR-10 (391 batches of 128) is **extrapolated** from the median batch time, and the budget's
   EP run (epochs x that) from it -- per-epoch evaluation not included. ``--budget tiny``: the
   same recipe on the ``digits`` config, batch 16, synthetic 8x8 images (CI).

   ``lava``/``lava-fixed`` are exercised on cuda too: they simulate on the host and copy states
   back to the device, and ``ephw reproduce --budget gpu`` settles its ``lava-fixed`` teacher with
   ``--device cuda``.
2. **Every command once** with ``--device DEVICE`` on tiny sizes, each ``python -m ephw ...`` in a
   subprocess with a timeout: rc, seconds and the last stderr line of each. Every output goes to a
   temporary folder (the commands run there, ``EPHW_CACHE`` points there); the repository is only read.

Writes ``DIR/paper_scale_check.json`` (device, torch, per-command results, the timing), prints a
table, and exits 1 if any command failed (2 for a bad argument). ``--only settle-euler,train-ep``
runs a subset (``--list`` names them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shlex
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the checkout's ephw, as PYTHONPATH=REPO gives it
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

CIFAR10_TRAIN = 50_000
RESULT_FILE = "paper_scale_check.json"


# ------------------------------------------------------------------------------------------ commands
@dataclass
class Check:
    """One ephw command run once (``argv`` after ``python -m ephw``; ``{work}`` is the temp folder)."""

    name: str
    argv: list[str]
    timeout: float = 300.0
    needs: tuple[str, ...] = ()  # importable modules the command needs
    after: tuple[str, ...] = ()  # checks whose outputs it reads (skipped if one of them did not pass)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return "python -m ephw " + shlex.join(self.argv)

    @property
    def cli(self) -> str:
        """The ephw command it runs: ``settle``, ``train ep``, ``bench settle``, ..."""
        return " ".join(self.argv[:2] if self.argv[0] in ("train", "bench", "robustness") else self.argv[:1])


def make_checks(device: str, work: Path, data_root: Path) -> list[Check]:
    """Every ephw command that takes ``--device``, once, on tiny sizes (outputs under ``work``)."""
    from ephw.backends import backend_names

    dev = ["--device", device]
    w = str(work)
    checks = [
        Check(
            f"settle-{b}",
            ["settle", "--backend", b, "--n", "16", "--batch", "16", "--steps", "60", "--json", *dev],
            needs=("lava",) if b.startswith("lava") else (),
        )
        for b in backend_names()
    ]
    checks += [
        Check("compare", ["compare", "--backends", "euler,async", "--n", "16", "--batch", "16", "--json", *dev]),
        Check(
            "train-ep",
            ["train", "ep", "--data", "digits", "--epochs", "1", "--max-batches", "2", "--eval-steps", "20",
             "--no-progress", "--out", f"{w}/runs/ep", *dev],
        ),
        Check(
            "train-bp",
            ["train", "bp", "--data", "digits", "--epochs", "1", "--max-batches", "2", "--test-n", "32",
             "--no-progress", "--out", f"{w}/runs/bp", *dev],
        ),
        Check(
            "train-adv",
            ["train", "adv", "--data", "digits", "--epochs", "1", "--max-batches", "2", "--test-n", "32",
             "--pgd-steps", "2", "--no-progress", "--out", f"{w}/runs/adv", *dev],
        ),
        Check(
            "distill",
            ["distill", "--student", "cnn", "--epochs", "1", "--max-batches", "2", "--batch-size", "16",
             "--teacher-steps", "30", "--test-n", "32", "--timing-batch", "8", "--no-progress",
             "--out", f"{w}/runs/distill", *dev],
        ),
        Check(
            "robustness-run",
            ["robustness", "run", "--config", f"{w}/robustness_tiny.toml", "--out", f"{w}/robustness/r.jsonl",
             "--no-progress", *dev],
            needs=("foolbox",),
        ),
        Check(
            "robustness-report",
            ["robustness", "report", f"{w}/robustness/r.jsonl", "--out", f"{w}/robustness/report", *dev],
            needs=("matplotlib",),
            after=("robustness-run",),
        ),
        Check(
            "bench-settle",
            ["bench", "settle", "--config", "digits", "--batch", "8", "--repeats", "1", "--solvers", "euler,async",
             "--dtypes", "", "--reference-steps", "20", "--max-steps", "200", "--settle-repeats", "0", "--json", *dev],
        ),
        Check(
            "bench-train",
            ["bench", "train", "--config", "digits", "--batch", "8", "--solver", "async", "--free-steps", "20",
             "--nudge-steps", "5", "--max-steps", "200", "--json", *dev],
        ),
        Check("bench-warmstart", ["bench", "warmstart", "--n", "16", "--repeats", "1", "--json", *dev]),
        Check(
            "sweep-crossbar",
            ["sweep", "--backend", "crossbar", "--param", "read_noise.proportional", "--values", "0,0.02",
             "--seeds", "1", "--n", "16", "--batch", "16", "--steps", "60", "--json", *dev],
        ),
        Check(
            "reproduce-smoke",
            ["reproduce", "cifar10", "--budget", "smoke", "--data-root", str(data_root), "--run-dir",
             f"{w}/reproduce", "--docs", f"{w}/docs", "--no-ship", *dev],
            timeout=900.0,
            needs=("lava", "foolbox", "pyautoattack", "imagecorruptions"),
        ),
        Check(
            "bench-students",
            ["bench", "students", "--run-dir", f"{w}/reproduce", "--batch", "8", "--repeats", "1", "--json", *dev],
            after=("reproduce-smoke",),
        ),
    ]
    return checks


def missing_modules(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def last_line(text: str) -> str:
    """The last non-empty line (progress bars redraw with carriage returns: the last redraw)."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_check(c: Check, work: Path, env: dict[str, str], done: dict[str, Check]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ephw", *c.argv]
    row: dict[str, Any] = {"name": c.name, "cli": c.cli, "command": c.command, "rc": None, "seconds": None}
    missing = missing_modules(c.needs)
    blocked = [a for a in c.after if a not in done or done[a].result.get("status") != "ok"]
    if missing:
        return {**row, "status": "skipped", "reason": f"python module(s) not importable: {', '.join(missing)}"}
    if blocked:
        reason = f"needs the output of {', '.join(blocked)}, which did not run or pass"
        return {**row, "status": "skipped", "reason": reason}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=c.timeout
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return {**row, "status": "timeout", "seconds": round(time.perf_counter() - t0, 2),
                "last_stderr": last_line(err), "reason": f"no exit within {c.timeout:g} s"}
    row.update(rc=proc.returncode, seconds=round(time.perf_counter() - t0, 2), last_stderr=last_line(proc.stderr))
    row["status"] = "ok" if proc.returncode == 0 else "failed"
    if proc.returncode != 0:  # the whole story of a failure, for the JSON
        row["stderr_tail"] = proc.stderr[-4000:]
    return row


def write_inputs(work: Path) -> Path:
    """The tiny robustness config and a tiny CIFAR-like image tree (as tests/reproduce/conftest.py's)."""
    (work / "robustness").mkdir(parents=True, exist_ok=True)
    (work / "robustness_tiny.toml").write_text(
        '[run]\ndata = "digits"\nn = 8\nseeds = [0]\n'
        '[[models]]\nname = "EP-CNN"\npath = "bundled"\nsteps = 30\ntol = 1e-3\ngrad = "bptt:5"\n'
        '[[attacks]]\nname = "PGD-l2"\nmethod = "pgd"\nnorm = "L2"\neps = [1.0]\nsteps = 3\nrestarts = 1\n'
        "[checks]\ndouble_steps = false\ndouble_restarts = false\nzero_grad_images = 4\n"
    )
    import numpy as np
    from PIL import Image

    root = work / "tiny-cifar"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):  # root/{train,test}/c0..c9/NNNN.png, class-coloured noise
        for k in range(10):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.full((32, 32, 3), 25 * k, dtype=np.int16)
                img = np.clip(base + rng.integers(-20, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:04d}.png")
    return root


# ------------------------------------------------------------------------------------------ EP epoch timing
class _Captured(Exception):
    def __init__(self, settings: Any) -> None:
        self.settings = settings


def recipe_settings(recipe: str) -> tuple[Any, str]:
    """The EP settings of ``recipe`` and where they come from.

    ``gpu-budget``: exactly what ``ephw train ep`` builds from the first ``train ep`` command of
    ``ephw reproduce cifar10 --budget gpu`` (ephw's parser and defaults, training intercepted);
    ``cifar-defaults``: ``CIFAR_DEFAULTS`` on the ``paper`` config; else a named recipe on ``paper``.
    """
    from ephw.training.train_ep import CIFAR_DEFAULTS, EPTrainSettings

    if recipe == "cifar-defaults":
        settings = replace(EPTrainSettings(data="cifar10", **CIFAR_DEFAULTS), config="paper")
        return settings, "CIFAR_DEFAULTS, config paper"
    if recipe != "gpu-budget":
        from ephw.bench.recipes import get_recipe

        return get_recipe(recipe).settings(config="paper"), f"recipe {recipe} (ephw.bench.recipes), config paper"
    from unittest import mock

    import ephw.cli.train as cli_train
    import ephw.training.train_ep as train_ep_mod
    from ephw.cli.main import build_parser
    from ephw.reproduce.plan import build_plan

    step = next(s for s in build_plan("cifar10", "gpu") if s.stage == "train-ep")

    def capture(s: Any) -> Any:
        raise _Captured(s)

    with tempfile.TemporaryDirectory(prefix="ephw-paper-scale-") as never_written:
        args = build_parser().parse_args([*step.argv, "--out", f"{never_written}/ep", "--no-progress"])
        with mock.patch.object(cli_train, "train_ep", capture), mock.patch.object(train_ep_mod, "_train_ep", capture):
            try:
                args.func(args)
            except _Captured as c:
                return c.settings, "ephw reproduce cifar10 --budget gpu: ephw " + shlex.join(step.argv)
    raise RuntimeError("ephw train ep did not reach train_ep(settings); update recipe_settings()")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ep_batches(budget: str, recipe: str, device: torch.device, batches: int, seed: int = 0) -> dict[str, Any]:
    """Seconds per EP training batch (one warm-up, then ``batches`` timed), and an epoch extrapolated."""
    from ephw.backends import get_backend
    from ephw.data import random_crop_flip
    from ephw.reproduce.plan import BUDGETS
    from ephw.training.ep import ep_step
    from ephw.training.free_states import FreeStateStore
    from ephw.training.loop import per_layer
    from ephw.training.run import seeded
    from ephw.training.train_ep import EPTrainSettings, build_model

    s, source = recipe_settings(recipe)
    data = "cifar10"
    if budget == "tiny":  # same phases, a small net and batch: CI on CPU
        d = EPTrainSettings()  # the digits config's per-layer rates (paper's have one per paper layer)
        s = replace(s, config="digits", data="digits", batch_size=16, lrs=d.lrs, weight_decays=d.weight_decays)
        data = "digits"
    torch.manual_seed(seed)
    net = build_model(s, 10).to(device)
    shape = tuple(net.config.in_shape)
    n_images = (batches + 1) * s.batch_size
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand((n_images, *shape), generator=gen)  # synthetic: with fixed phases the cost ignores content
    labels = torch.randint(0, 10, (n_images,), generator=gen)
    backend = get_backend(s.backend, **s.backend_options)
    store = None if s.free_init == "zero" else FreeStateStore(s.free_init, net.state_shapes(), n_images)
    groups = [list(m.parameters()) for m in net.synapses]
    lrs = per_layer(tuple(s.lrs), len(groups), "lrs")
    wds = per_layer(tuple(s.weight_decays), len(groups), "weight_decays")
    opt = torch.optim.SGD(
        [{"params": p, "lr": lr, "weight_decay": wd} for p, lr, wd in zip(groups, lrs, wds)], lr=lrs[0],
        momentum=s.momentum,
    )
    dtype = next(p.dtype for p in net.parameters())
    augment = s.augment if s.augment is not None else data.startswith("cifar")
    times, sweeps = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for b in range(batches + 1):
        idx = torch.arange(b * s.batch_size, (b + 1) * s.batch_size)
        _sync(device)
        t0 = time.perf_counter()
        x, y = images[idx], labels[idx]
        if augment:
            x = random_crop_flip(x, 4, generator=seeded(s.seed, 0, b))
        x, y = x.to(device, dtype), y.to(device)
        opt.zero_grad(set_to_none=True)
        init = None if store is None else store.take(idx, x)
        ep = ep_step(net, x, y, backend=backend, beta=s.beta, free_steps=s.free_steps, nudge_steps=s.nudge_steps,
                     tol=s.tol, init=init, nudging=s.nudging)
        if store is not None:
            store.put(idx, ep.free.states)
        for p, g in zip(net.parameters(), ep.grads):
            p.grad = g
        opt.step()
        phases = [r for r in (ep.free, ep.plus, ep.minus) if r is not None]
        sweeps.append(sum(int(r.steps_per_sample.sum()) for r in phases))
        _sync(device)
        if b:  # batch 0 is the warm-up (allocator, cuDNN/oneDNN kernel choice)
            times.append(time.perf_counter() - t0)
    per_batch = statistics.median(times)
    per_epoch = math.ceil(CIFAR10_TRAIN / s.batch_size)
    out: dict[str, Any] = {
        "budget": budget,
        "settings_source": source,
        "config": s.config,
        "data": f"synthetic {data}-shaped images {list(shape)} (uniform noise, random labels)",
        "batch_size": s.batch_size,
        "free_steps": s.free_steps,
        "nudge_steps": s.nudge_steps,
        "nudging": s.nudging,
        "free_init": s.free_init,
        "beta": s.beta,
        "tol": s.tol,
        "backend": s.backend,
        "backend_options": s.backend_options,
        "noise_aware": s.noise_aware,  # not timed: a noise-aware run also draws a chip per batch
        "augment": augment,
        "threads": torch.get_num_threads(),
        "timed_batches": batches,
        "warmup_batches": 1,
        "seconds_per_batch": times,
        "median_seconds_per_batch": per_batch,
        "image_sweeps_per_batch": statistics.median(sweeps[1:]),
    }
    if device.type == "cuda":
        out["peak_cuda_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    if budget == "full":
        epochs = BUDGETS["gpu"].ep_epochs
        out.update(
            extrapolated=True,
            note=f"EXTRAPOLATED from {batches} timed batches: {per_epoch} batches x the median batch time; "
            "per-epoch test evaluation not included",
            batches_per_epoch=per_epoch,
            epoch_seconds_extrapolated=per_batch * per_epoch,
            gpu_budget_ep_epochs=epochs,
            gpu_budget_ep_run_hours_extrapolated=per_batch * per_epoch * epochs / 3600,
        )
    return out


# ------------------------------------------------------------------------------------------ main
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical CPUs)"


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ("name", "status", "rc", "seconds", "note")
    table = [
        {
            "name": r["name"],
            "status": r["status"],
            "rc": "" if r["rc"] is None else str(r["rc"]),
            "seconds": "" if r["seconds"] is None else f"{r['seconds']:.1f}",
            "note": (r.get("reason") or (r.get("last_stderr") if r["status"] != "ok" else ""))[:90],
        }
        for r in rows
    ]
    widths = {c: max(len(c), *(len(t[c]) for t in table)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for t in table:
        print("  ".join(t[c].ljust(widths[c]) for c in cols).rstrip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device for everything (default: cuda if available, else cpu)")
    p.add_argument("--budget", default="full", choices=("tiny", "full"),
                   help="full: paper-config EP batches timed, an epoch extrapolated; tiny: digits config (CI)")
    p.add_argument("--batches", type=int, default=None,
                   help="timed EP batches after one warm-up (default: 10 with full on cuda, else 2)")
    p.add_argument("--recipe", default="gpu-budget",
                   help="EP settings timed: gpu-budget (default), cifar-defaults, or a named recipe")
    p.add_argument("--out", default=None, help=f"folder for {RESULT_FILE} (default: a new temporary folder)")
    p.add_argument("--only", default=None,
                   help="comma-separated check names to run (see --list); 'timing' = the EP timing")
    p.add_argument("--no-timing", action="store_true", help="skip the EP epoch timing")
    p.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every command's timeout")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder (printed)")
    p.add_argument("--list", action="store_true", help="print the check names and commands, run nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ephw.device import resolve_device
    from ephw.errors import EphwError

    try:
        device = resolve_device(args.device)
    except EphwError as exc:
        print(f"paper_scale_check: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ephw-paper-scale-"))
    checks = make_checks(str(device), work, work / "tiny-cifar")
    names = [c.name for c in checks]
    if args.list:
        for c in checks:
            print(f"{c.name:20s} {c.command}")
        shutil.rmtree(work, ignore_errors=True)
        return 0
    only = None if args.only is None else {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = sorted((only or set()) - set(names) - {"timing"})
    if unknown:
        print(f"paper_scale_check: unknown check(s) {', '.join(unknown)}; known: timing, {', '.join(names)}",
              file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 2
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ephw-paper-scale-out-"))
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the work folder
    report: dict[str, Any] = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "budget": args.budget,
        "repo": str(REPO),
        "commands": [],
    }
    try:
        if not args.no_timing and (only is None or "timing" in only):
            batches = args.batches or (2 if args.budget == "tiny" else 10 if device.type == "cuda" else 2)
            print(f"timing {batches} EP training batch(es) ({args.budget} budget) on {device} ...", flush=True)
            try:
                report["ep_epoch_timing"] = time_ep_batches(args.budget, args.recipe, device, batches)
            except Exception as exc:  # reported like a failed command
                report["ep_epoch_timing"] = {"error": f"{type(exc).__name__}: {exc}"}
        write_inputs(work)
        env = {**os.environ, "EPHW_CACHE": str(work / "cache"), "MPLBACKEND": "Agg"}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        done: dict[str, Check] = {}
        for c in checks:
            if only is not None and c.name not in only:
                c.result = {"name": c.name, "cli": c.cli, "command": c.command, "rc": None, "seconds": None,
                            "status": "not run", "reason": "not in --only"}
                report["commands"].append(c.result)
                continue
            c.timeout *= args.timeout_scale
            print(f"{c.name} ...", end=" ", flush=True)
            c.result = run_check(c, work, env, done)
            print(c.result["status"], "" if c.result["seconds"] is None else f"{c.result['seconds']:.1f} s", flush=True)
            done[c.name] = c
            report["commands"].append(c.result)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    failed = [r["name"] for r in report["commands"] if r["status"] in ("failed", "timeout")]
    timing = report.get("ep_epoch_timing", {})
    if "error" in timing:
        failed.append("timing")
    report["failed"] = failed
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps(report, indent=1) + "\n")

    print(f"\n{report['device_name']} ({device}), torch {torch.__version__}")
    if "median_seconds_per_batch" in timing:
        line = (f"EP batch, {timing['config']} config, batch {timing['batch_size']}, {timing['free_steps']} free / "
                f"{timing['nudge_steps']} nudged steps ({timing['nudging']}, free init {timing['free_init']}, "
                f"{timing['backend']}): {timing['median_seconds_per_batch']:.3f} s "
                f"(median of {timing['timed_batches']})")
        print(line)
        if timing.get("extrapolated"):
            print(f"one CIFAR-10 epoch ({timing['batches_per_epoch']} batches) EXTRAPOLATED: "
                  f"{timing['epoch_seconds_extrapolated'] / 60:.1f} min; {timing['gpu_budget_ep_epochs']} epochs "
                  f"(gpu budget, one seed, no evaluation): {timing['gpu_budget_ep_run_hours_extrapolated']:.1f} h")
    elif "error" in timing:
        print(f"EP timing FAILED: {timing['error']}")
    if report["commands"]:
        print()
        print_table(report["commands"])
    print(f"\n{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; "
          f"{report['total_seconds']:.0f} s; report {out_dir / RESULT_FILE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
