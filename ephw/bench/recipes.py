"""Time-to-accuracy of EP training recipes: named recipes, their curves, and one-run epoch timing.

A *recipe* is the part of ``ephw train ep``'s settings that decides how an EP-CNN learns
(phases, nudging, where the free phase starts, learning rates, epochs). Its *curve* is the
test accuracy after each epoch against two costs:

- **image-sweeps**: settling sweeps of every phase summed over the training images (machine
  independent; a run's ``metrics.jsonl`` logs them per batch, older runs have them from their
  fixed phase lengths), and
- **train seconds**: the steps' own wall time (phases + gradient; evaluation excluded) on the
  machine that ran them -- comparable only between runs timed side by side, which
  :func:`time_recipes` does for one epoch's worth of batches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ephw.timing import time_rounds
from ephw.checkpoint import read_meta
from ephw.data import load_dataset, random_crop_flip
from ephw.errors import InputError
from ephw.outputs import atomic_write, save_figure
from ephw.training.ep import ep_step
from ephw.training.free_states import FreeStateStore
from ephw.training.run import epoch_batches, seeded
from ephw.training.train_ep import CIFAR_DEFAULTS, EPTrainSettings, build_model


@dataclass(frozen=True)
class Recipe:
    """A named EP training recipe for CIFAR (``cpu-small`` unless ``config`` says otherwise)."""

    name: str
    about: str
    free_steps: int = 30
    nudge_steps: int = 10
    nudging: str = "centered"
    beta: float = 0.5
    free_init: str = "zero"
    lrs: tuple[float, ...] = tuple(CIFAR_DEFAULTS["lrs"])
    weight_decays: tuple[float, ...] = (3e-4,)
    epochs: int = 20
    tol: float | None = None
    backend: str = "async"
    config: str = "cpu-small"

    def settings(self, **overrides: Any) -> EPTrainSettings:
        """``ephw train ep --data cifar10`` settings of this recipe (``overrides``: seed, out, ...)."""
        base = EPTrainSettings(data="cifar10", **CIFAR_DEFAULTS)
        mine = {k: v for k, v in asdict(self).items() if k not in ("name", "about")}
        return replace(base, **{**mine, **overrides})

    def sweeps_per_image(self) -> int:
        """Sweeps per training image and batch at fixed phase lengths (an upper bound with ``tol``)."""
        return self.free_steps + self.nudge_steps * (2 if self.nudging == "centered" else 1)

    def cli_args(self) -> list[str]:
        """The ``ephw train ep`` flags that select this recipe."""
        args = ["--config", self.config, "--free-steps", str(self.free_steps), "--nudge-steps", str(self.nudge_steps)]
        args += ["--nudging", self.nudging, "--beta", f"{self.beta:g}", "--free-init", self.free_init]
        args += ["--lrs", ",".join(f"{v:g}" for v in self.lrs), "--wds", ",".join(f"{v:g}" for v in self.weight_decays)]
        args += ["--epochs", str(self.epochs), "--backend", self.backend]
        return args + (["--tol", f"{self.tol:g}"] if self.tol is not None else [])


#: The shipped-EP-CNN recipe of the first CIFAR-10 run (reproduce/cifar10/ep-s0, 68.3 % after 20 epochs).
TODAY = Recipe(
    "laborieux-30-10",
    "null-state free phase of 30 async sweeps, centered nudging 2 x 10 sweeps at beta 0.5, "
    "0.4x Laborieux's per-layer rates, 20 epochs (the first CIFAR-10 run)",
)

#: Persistent EP: every training image's free phase continues from the free state it reached on its
#: last visit (ephw.training.free_states), so 12 sweeps go further than 30 from the null state;
#: centered nudging 2 x 6 sweeps; 1.5x today's rates; 14 epochs. 24 sweeps per image and batch.
PERSISTENT = Recipe(
    "persistent-12-6",
    "free phase from each image's last free state (12 async sweeps), centered nudging 2 x 6 at beta 0.5, "
    "0.6x Laborieux's per-layer rates, 14 epochs",
    free_steps=12,
    nudge_steps=6,
    free_init="image",
    lrs=(0.15, 0.09, 0.06, 0.045, 0.03),
    epochs=14,
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (TODAY, PERSISTENT)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


# ---------------------------------------------------------------------------------------------- curves
@dataclass(frozen=True)
class CurvePoint:
    """Test accuracy after ``epoch`` epochs, with the training cost up to then."""

    epoch: int
    test_accuracy: float
    image_sweeps: float  # sweeps of all phases summed over training images
    train_seconds: float | None  # the steps' wall time; None for runs that did not log it


@dataclass(frozen=True)
class Curve:
    """One run's time-to-accuracy curve (``points`` by epoch)."""

    label: str
    run: str
    points: list[CurvePoint] = field(default_factory=list)

    def first_reaching(self, accuracy: float) -> CurvePoint | None:
        """The first point at or above ``accuracy`` (a fraction), or ``None``."""
        return next((p for p in self.points if p.test_accuracy >= accuracy), None)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "run": self.run, "points": [asdict(p) for p in self.points]}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"no metrics.jsonl in {path.parent} (is it an ephw train ep run folder?)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path}: line {n} is not JSON") from None
    return rows


def curve_of_run(run: str | Path, label: str | None = None) -> Curve:
    """The curve of an ``ephw train ep`` run folder from its ``metrics.jsonl`` and ``checkpoint.pt`` settings.

    A ``train`` row averages the batches since the previous row; rows without ``image_sweeps``
    (runs before it was logged) count ``batch size x (free + 2 nudge)`` sweeps per batch from
    the run's fixed phase lengths, and have no train seconds.
    """
    run = Path(run)
    rows = _read_rows(run / "metrics.jsonl")
    settings = _run_settings(run)
    per_batch_fixed = settings["batch_size"] * (
        settings["free_steps"] + settings["nudge_steps"] * (1 if settings.get("nudging") == "positive" else 2)
    )
    points: list[CurvePoint] = []
    sweeps, seconds, timed = 0.0, 0.0, True
    last_batch: dict[int, int] = {}
    for r in rows:
        if r.get("event") == "train":
            n = r["batch"] - last_batch.get(r["epoch"], 0)
            last_batch[r["epoch"]] = r["batch"]
            sweeps += n * r.get("image_sweeps", per_batch_fixed)
            if "seconds" in r:
                seconds += n * r["seconds"]
            else:
                timed = False
        elif r.get("event") == "epoch" and "test_accuracy" in r:
            points.append(CurvePoint(r["epoch"], float(r["test_accuracy"]), sweeps, seconds if timed else None))
    return Curve(label or run.name, str(run), points)


def _run_settings(run: Path) -> dict[str, Any]:
    """The run's EP settings, from its ``model.pt`` meta (a finished run) or ``checkpoint.pt`` (one in progress)."""
    for name in ("model.pt", "checkpoint.pt"):
        if (run / name).is_file():
            settings = read_meta(run / name).get("settings")
            if isinstance(settings, dict) and "free_steps" in settings:
                return settings
    raise InputError(f"{run} has no EP model.pt or checkpoint.pt with training settings")


def plot_curves(curves: Sequence[Curve], path: str | Path, target: float | None = None) -> Path:
    """Test accuracy vs image-sweeps (left) and vs train seconds (right), one line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for k, c in enumerate(curves):
        xs = [p.image_sweeps for p in c.points]
        ys = [100 * p.test_accuracy for p in c.points]
        color = f"C{k}"  # one colour per run on both panels
        a.plot(xs, ys, marker="o", ms=3, color=color, label=c.label)
        if c.points and all(p.train_seconds is not None for p in c.points):
            b.plot([p.train_seconds / 3600 for p in c.points], ys, marker="o", ms=3, color=color, label=c.label)
    b.text(0.02, 0.02, "runs that logged step times only", transform=b.transAxes, fontsize=7, color="grey")
    for ax in (a, b):
        if target is not None:
            ax.axhline(100 * target, color="grey", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    a.set_xlabel("image-sweeps (all phases, summed over training images)")
    b.set_xlabel("train wall time on this machine (h, steps only)")
    a.set_ylabel("test accuracy (%), 10,000 images")
    a.legend(fontsize=8)
    fig.tight_layout()
    out = save_figure(path, fig)
    plt.close(fig)
    return out


def write_curves(curves: Sequence[Curve], json_path: str | Path) -> Path:
    return atomic_write(json_path, json.dumps([c.to_dict() for c in curves], indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------- timing
def time_recipes(
    recipes: Sequence[Recipe], batches: int = 5, repeats: int = 3, seed: int = 0, data_root: str | None = None
) -> dict[str, Any]:
    """Seconds per training batch of each recipe, interleaved in one run (ratios are what carries over).

    Each call trains ``batches`` consecutive batches of epoch 1 (augmented as in training) from
    the same fresh model, with the recipe's carried free states where it has them (the first
    pass fills them), so the phases and the gradient are timed, not the SGD update.
    """
    torch.set_num_threads(1)
    train = load_dataset("cifar10", "train", data_root)
    order = epoch_batches(len(train), 128, seed, 0)[:batches]
    fns = {}
    for r in recipes:
        s = r.settings(seed=seed)
        net = build_model(s, len(train.classes))
        store = None if s.free_init == "zero" else FreeStateStore(s.free_init, net.state_shapes(), len(train))

        def run(s: EPTrainSettings = s, net: Any = net, store: FreeStateStore | None = store) -> None:
            for b, idx in enumerate(order):
                x, y = train.batch(idx)
                x = random_crop_flip(x, 4, generator=seeded(s.seed, 0, b))
                init = None if store is None else store.take(idx, x)
                ep = ep_step(net, x, y, backend=s.backend, beta=s.beta, free_steps=s.free_steps,
                             nudge_steps=s.nudge_steps, tol=s.tol, init=init, nudging=s.nudging)
                if store is not None:
                    store.put(idx, ep.free.states)

        fns[r.name] = run
    rounds = time_rounds(fns, repeats=repeats, warmup=1)
    ref = recipes[0].name
    per_batch = {k: sorted(v)[len(v) // 2] / batches for k, v in rounds.items()}
    return {
        "batches": batches,
        "repeats": repeats,
        "seconds_per_batch": per_batch,
        "ratio_to_first": {k: per_batch[k] / per_batch[ref] for k in per_batch},
        "ratio_per_round": {k: [a / b for a, b in zip(rounds[k], rounds[ref])] for k in rounds},
    }
