"""Data-parallel training on 2 gloo CPU ranks (torchrun from pytest, 1 thread per rank) equals 1 rank.

Every run goes through ``torchrun --standalone`` (a free rendezvous port of its own), with a
wall-clock limit; the float64 runs start ``tests/distributed/worker.py`` (the trainers'
Python API, default dtype float64), the kill/resume run starts ``python -m ephw`` itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ephw import distributed

WORKER = Path(__file__).with_name("worker.py")
LIMIT_S = 240


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(n: int, *argv: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", *argv]


def run_worker(n: int, trainer: str, out: Path, **settings: object) -> dict:
    spec = {"trainer": trainer, "float64": True, "settings": {"out": str(out), "progress": False, **settings}}
    proc = subprocess.run(
        torchrun(n, str(WORKER), json.dumps(spec)), env=env(), capture_output=True, text=True, timeout=LIMIT_S
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def max_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


def assert_float64(path: Path) -> None:
    assert any(t.dtype == torch.float64 for t in weights(path).values())


def assert_close(a: object, b: object, tol: float, where: str = "") -> None:
    """Nested dicts/lists equal, floats within ``tol``."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(float(a) - float(b)) <= tol, f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def test_shard_split_is_balanced_and_complete() -> None:
    for n in (0, 1, 7, 32, 33):
        for size in (1, 2, 3, 5):
            parts = [distributed.shard(n, distributed.World(r, size)) for r in range(size)]
            got = [i for p in parts for i in range(n)[p]]
            assert got == list(range(n))
            lens = [p.stop - p.start for p in parts]
            assert max(lens) - min(lens) <= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend,options",
    [("async", {}), ("crossbar", {"preset": "ideal"})],
)
def test_ep_two_ranks_of_16_equal_one_rank_of_32(tmp_path: Path, backend: str, options: dict) -> None:
    common = dict(epochs=1, batch_size=32, max_batches=3, backend=backend, backend_options=options, checkpoint_every=1)
    one = run_worker(1, "ep", tmp_path / "one", **common)
    two = run_worker(2, "ep", tmp_path / "two", **common)
    assert_float64(tmp_path / "one" / "model.pt")
    diff = max_diff(tmp_path / "one" / "model.pt", tmp_path / "two" / "model.pt")
    print(f"ep {backend}: max |w_1rank - w_2ranks| after 3 steps = {diff:.3g}")
    assert diff <= 1e-5
    assert one["test_accuracy"] == pytest.approx(two["test_accuracy"])
    assert one["test_n"] == two["test_n"]


@pytest.mark.slow
def test_bp_two_ranks_equal_one_rank_with_ragged_last_batch(tmp_path: Path) -> None:
    # digits' 1437 training images in batches of 32: the last one (29) splits 15/14
    common = dict(epochs=1, batch_size=32, checkpoint_every=50)
    one = run_worker(1, "bp", tmp_path / "one", **common)
    two = run_worker(2, "bp", tmp_path / "two", **common)
    assert_float64(tmp_path / "one" / "model.pt")
    diff = max_diff(tmp_path / "one" / "model.pt", tmp_path / "two" / "model.pt")
    print(f"bp: max |w_1rank - w_2ranks| after 45 steps = {diff:.3g}")
    assert diff <= 1e-5
    assert one["test_accuracy"] == pytest.approx(two["test_accuracy"])


@pytest.mark.slow
def test_adv_two_ranks_equal_one_rank_random_starts_drawn_for_the_global_batch(tmp_path: Path) -> None:
    common = dict(epochs=1, batch_size=32, max_batches=3, pgd_steps=3, checkpoint_every=1)
    one = run_worker(1, "adv", tmp_path / "one", **common)
    two = run_worker(2, "adv", tmp_path / "two", **common)
    diff = max_diff(tmp_path / "one" / "model.pt", tmp_path / "two" / "model.pt")
    print(f"adv: max |w_1rank - w_2ranks| after 3 steps = {diff:.3g}")
    assert diff <= 1e-5
    assert one["test_accuracy"] == pytest.approx(two["test_accuracy"])


@pytest.mark.slow
@pytest.mark.parametrize("cache_teacher", [False, True])
def test_distill_two_ranks_equal_one_rank(tmp_path: Path, cache_teacher: bool, monkeypatch) -> None:
    monkeypatch.setenv("EPHW_CACHE", str(tmp_path / "cache"))
    common = dict(
        epochs=1,
        batch_size=32,
        max_batches=3,
        student="cnn",
        teacher_steps=100,
        teacher_tol=1e-6,
        train_n=200,
        test_n=100,
        cache_teacher=cache_teacher,
        timing_batch=8,
        timing_repeats=1,
        checkpoint_every=1,
    )
    one = run_worker(1, "distill", tmp_path / "one", **common)
    two = run_worker(2, "distill", tmp_path / "two", **common)
    assert_float64(tmp_path / "one" / "model.pt")
    diff = max_diff(tmp_path / "one" / "model.pt", tmp_path / "two" / "model.pt")
    print(f"distill (cache_teacher={cache_teacher}): max |w_1rank - w_2ranks| after 3 steps = {diff:.3g}")
    assert diff <= 1e-5
    for key in ("test_accuracy", "agreement", "teacher_test_accuracy"):
        assert one[key] == pytest.approx(two[key])
    assert one["layer_mse"] == pytest.approx(two["layer_mse"], rel=1e-9)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc/PID/task/*/children``), children first."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *descendants(k)]
    return out


def wait_gone(pids: list[int], timeout_s: float = 30.0) -> None:
    """Wait until none of ``pids`` is alive (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state == "Z":
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"process {pid} still alive after SIGKILL")


def saved_position(run: Path) -> tuple[int, int]:
    """``(epoch, batch)`` of the run's checkpoint (``(-1, 0)`` before the first)."""
    try:
        training = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["training"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return (-1, 0)
    return (int(training["epoch"]), int(training["batch"]))


@pytest.mark.slow
def test_two_rank_cli_run_killed_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    def cli(out: Path, *extra: str, ranks: int = 2) -> list[str]:
        return torchrun(
            ranks,
            "-m",
            "ephw",
            "train",
            "ep",
            "--data",
            "digits",
            "--epochs",
            "2",
            "--max-batches",
            "12",
            "--checkpoint-every",
            "2",
            "--no-progress",
            "--out",
            str(out),
            *extra,
        )

    full = subprocess.run(cli(tmp_path / "full"), env=env(), capture_output=True, text=True, timeout=LIMIT_S)
    assert full.returncode == 0, full.stderr[-4000:]
    # rank 0 alone printed the final metrics
    assert len([ln for ln in full.stdout.splitlines() if ln.startswith("{")]) == 1

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        cli(killed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + LIMIT_S
    try:
        # kill during epoch 2, once its first checkpoint (batch 2) is written
        while saved_position(killed) < (1, 2) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "the run finished before it could be killed"
        # torchrun's workers run in sessions of their own: SIGKILL each rank and torchrun, by pid (a lost node)
        tree = descendants(proc.pid)
        assert len(tree) >= 2, tree
        for pid in [*tree, proc.pid]:
            os.kill(pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    wait_gone(tree)
    assert not (killed / "model.pt").exists()
    epoch, batch = saved_position(killed)
    print(f"killed with the checkpoint at epoch {epoch} batch {batch} (0-based)")
    assert epoch == 1 and 2 <= batch < 12

    other = tmp_path / "resumed-on-1"  # the same checkpoint, resumed on another rank count
    shutil.copytree(killed, other)
    resumed = subprocess.run(cli(killed, "--resume"), env=env(), capture_output=True, text=True, timeout=LIMIT_S)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    diff = max_diff(tmp_path / "full" / "model.pt", killed / "model.pt")
    print(f"killed + resumed vs uninterrupted (2 ranks): max weight difference {diff:.3g}")
    assert diff == 0.0

    on_one = subprocess.run(cli(other, "--resume", ranks=1), env=env(), capture_output=True, text=True, timeout=LIMIT_S)
    assert on_one.returncode == 0, on_one.stderr[-4000:]
    diff_one = max_diff(tmp_path / "full" / "model.pt", other / "model.pt")
    print(f"killed on 2 ranks + resumed on 1 vs uninterrupted (float32): max weight difference {diff_one:.3g}")
    assert diff_one <= 1e-5

    def rows(run: Path) -> list[dict]:
        out = []
        for line in (run / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["event"] in ("train", "epoch"):
                out.append({k: v for k, v in r.items() if k not in ("time", "eval_seconds", "seconds")})
        return out

    assert rows(killed) == rows(tmp_path / "full")


@pytest.mark.slow
def test_settle_and_compare_split_across_ranks_report_the_same_numbers() -> None:
    def run(n: int, *argv: str) -> list[dict]:
        proc = subprocess.run(
            # "--": torchrun would take ephw's --n for an abbreviation of its own --nnodes/--nproc-per-node
            torchrun(n, "-m", "ephw", "--", *argv),
            env=env(),
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    settle = ("settle", "--backend", "async", "--n", "101", "--json")
    compare = ("compare", "--backends", "euler,async", "--n", "101", "--json")
    for argv, drop in ((settle, ("seconds", "image_steps_per_second")), (compare, ("seconds",))):
        one, two = run(1, *argv), run(2, *argv)
        assert len(one) == len(two) == 1  # rank 0 alone prints

        def clean(obj: object) -> object:
            if isinstance(obj, dict):
                return {k: clean(v) for k, v in obj.items() if k not in drop}
            if isinstance(obj, list):
                return [clean(v) for v in obj]
            return obj

        # float32 fixed points settled in other batch compositions agree to rounding (~1e-7). A
        # sample whose residual lands at tol can stop one sweep earlier or later when the conv
        # kernels differ with the batch size (oneDNN on AVX-512 CPUs: measured 1 of 101 images):
        # step counts may differ by one sweep on at most 2 images, everything else to rounding.
        a, b = clean(two[0]), clean(one[0])
        for row_a, row_b in zip(a.get("rows", [a]), b.get("rows", [b])):
            for key, limit in (("steps_mean", 2 / 101 + 1e-3), ("steps_max", 1)):
                if key in row_a:
                    assert abs(row_a.pop(key) - row_b.pop(key)) <= limit, key
        assert_close(a, b, 1e-5)
