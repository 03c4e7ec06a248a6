"""``ephw distill``: train a feed-forward student on the fixed points of an EP-CNN (seed paper Sec. 3.1).

Students (:data:`STUDENT_KINDS`):

- ``cnn`` -- "Distilled BP-CNN": the teacher's layer structure (:class:`~ephw.feedforward.EPTopologyCNN`,
  hard sigmoid), Eq. 8 (every hidden state + output);
- ``cnn-ll`` -- the same network, Eq. 9 (output only);
- ``resnet18`` -- CIFAR-style ResNet-18, Eq. 9.

The teacher settles every (augmented) training batch on its backend as it comes, or, with
``cache_teacher``, the un-augmented training set once. Everything else (seeded batches,
per-layer learning rates, resumable checkpoints) is the shared feed-forward loop.

A feed-forward ``teacher`` file (a BP-CNN of the EP topology) is the control teacher
(:class:`~ephw.distill.feedforward_teacher.FeedForwardTeacher`): the same students, distilled
from its activations and outputs instead of a fixed point; it is picked by the file's format.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ephw import distributed
from ephw.checkpoint import BUNDLED_MODEL, load_checkpoint
from ephw.data import load_dataset
from ephw.distill.losses import distill_loss, layer_weights
from ephw.distill.metrics import evaluate_student, time_student_vs_teacher
from ephw.distill.feedforward_teacher import FEEDFORWARD_BACKEND, FeedForwardTeacher, is_feedforward_checkpoint
from ephw.distill.teacher import TargetSource, Teacher
from ephw.errors import ConfigError
from ephw.feedforward import CNNSpec, EPTopologyCNN, ResNet18, ResNetSpec, read_feedforward_checkpoint, save_feedforward
from ephw.model import EnergyModel
from ephw.training.feedforward_loop import SGDSettings, fit, resolve_augment, write_metrics_json
from ephw.training.loop import check_loop_settings
from ephw.training.run import run_lock

STUDENT_KINDS = ("cnn", "cnn-ll", "resnet18")
STUDENT_INITS = ("random", "teacher")


@dataclass
class DistillSettings(SGDSettings):
    """A distillation run: :class:`SGDSettings` plus teacher and student.

    Attributes:
        teacher: EP checkpoint (``None``: the bundled digits model), or a feed-forward EP-topology
            CNN's (a BP-CNN: the control teacher, :mod:`ephw.distill.feedforward_teacher`).
        data: dataset (``None``: the teacher's, from its meta).
        student: a key of :data:`STUDENT_KINDS`.
        teacher_backend, teacher_backend_options: how the teacher settles (any registered
            backend and its constructor options, e.g. ``{"preset": "pcm"}`` for ``crossbar``); a
            feed-forward teacher does not settle: its runs record ``teacher_backend`` as
            :data:`~ephw.distill.feedforward_teacher.FEEDFORWARD_BACKEND`.
        teacher_steps, teacher_tol: settle budget and residual tolerance of the teacher.
        cache_teacher: settle the un-augmented training set once and reuse its fixed points
            (turns augmentation off; memory: one float per state unit per training image).
        train_n: train on the first ``train_n`` training images only (a class-balanced subset,
            :mod:`ephw.data.order`; for slow teachers such as ``lava-fixed``); ``None``: all.
        layer_weights: weights ``w_1 .. w_{N-1}`` of Eq. 8's hidden-layer MSE terms (one per
            hidden layer, or one value for all); ``ce_weight``: weight of the output term.
        width: ResNet-18 first-stage width (64 = the standard network).
        init: ``random`` (PyTorch's init, seeded) or ``teacher`` (copy the teacher's weights;
            EP-topology students only).
        timing_batch, timing_repeats: batch of test images and repetitions of the final
            student-vs-teacher timing.
    """

    data: str | None = None
    teacher: str | None = None
    student: str = "cnn"
    teacher_backend: str = "async"
    teacher_backend_options: dict[str, Any] = field(default_factory=dict)
    teacher_steps: int = 500
    teacher_tol: float = 1e-6
    cache_teacher: bool = False
    train_n: int | None = None
    layer_weights: tuple[float, ...] = (10.0,)
    ce_weight: float = 1.0
    width: int = 64
    init: str = "random"
    timing_batch: int = 256
    timing_repeats: int = 5
    epochs: int = 30
    lrs: tuple[float, ...] = (0.1,)
    out: str = "runs/distill"


def build_student(s: DistillSettings, net: EnergyModel | EPTopologyCNN) -> nn.Module:
    """The untrained student of ``s`` for teacher ``net`` (weights seeded by ``s.seed``).

    ``net``: an EP-CNN, or the feed-forward EP-topology CNN of a control teacher; either way the
    student has its topology (``cnn``, ``cnn-ll``) or its input shape and normalisation (``resnet18``).
    """
    cfg = net.spec.config if isinstance(net, EPTopologyCNN) else net.config
    torch.manual_seed(s.seed)
    if s.student in ("cnn", "cnn-ll"):
        student = EPTopologyCNN(CNNSpec(cfg, "hard-sigmoid"))
        if s.init == "teacher":
            if isinstance(net, EPTopologyCNN) and net.spec.activation != "hard-sigmoid":
                raise ConfigError(f"--init teacher needs a hard-sigmoid teacher, not {net.spec.activation}")
            student.load_teacher_weights(net)
        return student
    if s.init != "random":
        raise ConfigError(f"--init {s.init} needs an EP-topology student (cnn, cnn-ll), not {s.student}")
    spec = ResNetSpec(
        tuple(cfg.in_shape), cfg.classes, s.width, input_mean=tuple(cfg.input_mean), input_std=tuple(cfg.input_std)
    )
    return ResNet18(spec)


def resolve_settings(s: DistillSettings, teacher_meta: dict[str, Any], feedforward: bool = False) -> DistillSettings:
    """``s`` with the teacher path, dataset and augmentation made explicit (what the checkpoints store).

    ``feedforward``: the teacher is a feed-forward network, which does not settle: a backend other
    than the default is refused (:class:`ConfigError`, one line) and the run records
    :data:`FEEDFORWARD_BACKEND` as its ``teacher_backend``.
    """
    if feedforward:
        if s.teacher_backend not in (DistillSettings.teacher_backend, FEEDFORWARD_BACKEND) or s.teacher_backend_options:
            raise ConfigError(
                f"--teacher-backend {s.teacher_backend} does not apply: the teacher {s.teacher} is a feed-forward "
                "network (a forward pass, nothing settles)"
            )
        s = dataclasses.replace(s, teacher_backend=FEEDFORWARD_BACKEND)
    if s.student not in STUDENT_KINDS:
        raise ConfigError(f"unknown student {s.student!r}; valid: {', '.join(STUDENT_KINDS)}")
    if s.init not in STUDENT_INITS:
        raise ConfigError(f"unknown student init {s.init!r}; valid: {', '.join(STUDENT_INITS)}")
    data = s.data or teacher_meta.get("data", "digits")
    s = dataclasses.replace(s, teacher=str(s.teacher or BUNDLED_MODEL), data=data)
    if s.cache_teacher:
        if s.augment:
            raise ConfigError("--cache-teacher keeps the fixed points of un-augmented training images: drop --augment")
        s = dataclasses.replace(s, augment=False)
    return dataclasses.replace(s, augment=resolve_augment(s))


def check_settings(s: DistillSettings) -> None:
    """Refuse settings no distillation can use, before training starts (:class:`ConfigError`)."""
    check_loop_settings(s)
    if s.timing_batch < 1 or s.timing_repeats < 1:
        raise ConfigError(f"timing_batch and timing_repeats must be >= 1, got {s.timing_batch} and {s.timing_repeats}")
    if s.teacher_steps < 1:
        raise ConfigError(f"teacher_steps must be >= 1, got {s.teacher_steps}")


def distill(s: DistillSettings) -> dict[str, Any]:
    """Run (or resume) a distillation; returns the final metrics (also in ``s.out/metrics.json``).

    Writes ``checkpoint.pt``, ``metrics.jsonl``, ``metrics.json`` and ``model.pt`` (feed-forward
    checkpoint whose meta records the teacher checkpoint, its meta, backend and parameters).
    """
    check_settings(s)
    with run_lock(s.out):
        return _distill(s)


def load_teacher(s: DistillSettings) -> tuple[DistillSettings, TargetSource, dict[str, Any]]:
    """``s`` resolved (:func:`resolve_settings`), the teacher of ``s.teacher`` and its checkpoint meta.

    An EP checkpoint gives a :class:`Teacher` settling on ``s.teacher_backend``; a feed-forward
    one (by its file format) a :class:`FeedForwardTeacher` (Eq. 8 for a ``cnn`` student).
    """
    path = s.teacher or BUNDLED_MODEL
    feedforward = is_feedforward_checkpoint(path)
    ckpt = read_feedforward_checkpoint(path) if feedforward else load_checkpoint(path)
    s = resolve_settings(s, ckpt.meta, feedforward)
    net = ckpt.model(torch.get_default_dtype(), torch.device(s.device))
    if feedforward:
        return s, FeedForwardTeacher(net, eq8=s.student == "cnn"), ckpt.meta
    return s, Teacher(net, s.teacher_backend, s.teacher_backend_options, s.teacher_steps, s.teacher_tol), ckpt.meta


def _distill(s: DistillSettings) -> dict[str, Any]:
    s, teacher, teacher_meta = load_teacher(s)
    device = torch.device(s.device)
    net = teacher.net
    train = load_dataset(s.data, "train", s.data_root)
    if s.train_n is not None:
        train = train.subset(s.train_n)
    test = load_dataset(s.data, "test", s.data_root)
    if s.test_n is not None:
        test = test.subset(s.test_n)
    if train.image_shape != tuple(teacher.config.in_shape):
        raise ConfigError(f"{s.data} images are {train.image_shape} but the teacher expects {teacher.config.in_shape}")
    student = build_student(s, net).to(device)
    weights = layer_weights(s.layer_weights, teacher.n_hidden)
    eq8 = s.student == "cnn"
    cache = teacher.dataset_targets(train, reuse=True).to(device) if s.cache_teacher else None
    test_targets = teacher.dataset_targets(test, reuse=True)
    meta = {
        "data": s.data,
        "trainer": "distill",
        "student": s.student,
        "loss": "eq8" if eq8 else "eq9",
        "settings": asdict(s),
        "teacher": {
            "kind": teacher.kind,
            "path": s.teacher,
            "meta": teacher_meta,
            "config": teacher.config.to_dict(),
            **teacher.describe(),
        },
    }

    def batch_loss(m: nn.Module, x: Tensor, y: Tensor, idx: Tensor, epoch: int, b: int) -> tuple[Tensor, dict]:
        t = cache[idx.to(device)] if cache is not None else teacher.targets(x)
        if isinstance(m, EPTopologyCNN):
            out = m.states(x)
            hidden, logits = (out[: teacher.n_hidden] if eq8 else None), out[-1]
        else:
            hidden, logits = None, m(x)
        loss, parts = distill_loss(hidden, logits, t, weights, s.ce_weight)
        parts["agreement"] = float((logits.argmax(1) == t.predictions).float().mean())
        return loss, parts

    def evaluate(m: nn.Module) -> dict[str, Any]:
        return evaluate_student(m, test, test_targets)

    run = fit(student, s, train, batch_loss, evaluate, meta)
    metrics = {"student": s.student, "loss": meta["loss"], "data": s.data, **evaluate(student.eval())}
    if isinstance(teacher, Teacher):
        metrics["teacher_steps_mean"] = float(test_targets.steps.float().mean())
        x, _ = test.batch(slice(0, s.timing_batch))
        metrics["timing"] = time_student_vs_teacher(student, teacher, x, s.timing_repeats)
    else:  # a forward pass teaches: no settle to count or to time the student against
        metrics["teacher_steps_mean"] = metrics["timing"] = None
    metrics["teacher"] = {"kind": teacher.kind, "path": s.teacher, **teacher.describe()}
    meta["metrics"] = metrics
    if distributed.is_main():
        save_feedforward(run.model, student, meta)
        write_metrics_json(run.root, metrics)
    return metrics


def student_run_folder(s: DistillSettings) -> str:
    """Default ``--out``: ``runs/distill-STUDENT-BACKEND`` (``feedforward`` for a feed-forward teacher's backend)."""
    feedforward = s.teacher is not None and is_feedforward_checkpoint(s.teacher)
    return str(Path("runs") / f"distill-{s.student}-{FEEDFORWARD_BACKEND if feedforward else s.teacher_backend}")
