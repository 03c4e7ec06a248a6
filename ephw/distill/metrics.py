"""How close a student is to its teacher: accuracy, agreement, per-layer state error, speed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ephw import distributed
from ephw.timing import time_interleaved
from ephw.data import ImageSet
from ephw.distill.teacher import Teacher, TeacherTargets


@torch.no_grad()
def evaluate_student(
    student: nn.Module, data: ImageSet, teacher: TeacherTargets, batch_size: int = 512
) -> dict[str, Any]:
    """Clean accuracy, agreement with the teacher's predictions and per-layer state MSE on ``data``.

    Args:
        student: a feed-forward model; its states are compared when it has ``states(x)``
            (EP-topology CNN) and the teacher has hidden states, otherwise ``layer_mse`` is ``None``.
        data: the images (labels for the accuracy).
        teacher: the teacher's targets of the same images (:meth:`Teacher.dataset_targets`).

    Returns:
        ``test_accuracy``, ``agreement`` (fraction of images where student and teacher
        predict the same class), ``layer_mse`` (per hidden layer, mean over units and images,
        or ``None``), ``output_ce`` (Eq. 9 term), ``teacher_test_accuracy``, ``test_n``.
    """
    student.eval()
    param = next(student.parameters())
    device = param.device
    has_states = hasattr(student, "states") and bool(teacher.hidden)  # a relu-bn teacher has no states to match
    preds, ce_sum = [torch.zeros(0, dtype=torch.int64)], 0.0
    sq = [0.0] * len(teacher.hidden)
    part = distributed.shard(len(data))  # under torchrun: this rank's images, reduced below
    for lo in range(part.start, part.stop, batch_size):
        hi = min(lo + batch_size, part.stop)
        x, _ = data.batch(slice(lo, hi))
        x = x.to(device, param.dtype)
        t = teacher[lo:hi].to(device)
        out = student.states(x) if has_states else [student(x)]
        logits = out[-1]
        preds.append(logits.argmax(1).cpu())
        ce_sum += float(-(t.output * torch.log_softmax(logits, 1)).sum(1).sum())
        if has_states:
            for i, (s, h) in enumerate(zip(out, t.hidden)):
                sq[i] += float((s - h).pow(2).flatten(1).mean(1).sum())
    pred = distributed.gather_rows(torch.cat(preds))
    ce_sum, *sq = distributed.all_sum([ce_sum, *sq])
    n = len(data)
    return {
        "test_accuracy": float((pred == data.labels).float().mean()),
        "agreement": float((pred == teacher.predictions.cpu()).float().mean()),
        "layer_mse": [v / n for v in sq] if has_states else None,
        "output_ce": ce_sum / n,
        "teacher_test_accuracy": float((teacher.predictions.cpu() == data.labels).float().mean()),
        "test_n": n,
    }


@torch.no_grad()
def time_student_vs_teacher(student: nn.Module, teacher: Teacher, x: torch.Tensor, repeats: int = 5) -> dict[str, Any]:
    """Inference time per image of the student's forward pass vs the teacher's settle, measured interleaved.

    The teacher settles from the null state until every sample's residual is below its
    ``tol`` (its converged step count; at most ``steps``), as it does at inference.

    Args:
        x: a batch ``(B, C, H, W)`` of images in ``[0, 1]`` (both time the same batch).

    Returns:
        seconds per image of each, their ratio ``speedup`` (teacher / student), the
        teacher's mean steps on the batch, the batch size and torch's thread count.
    """
    student.eval()
    param = next(student.parameters())
    x = x.to(param.device, param.dtype)
    device = param.device
    times = time_interleaved(
        {"student": lambda: student(x), "teacher": lambda: teacher.settle(x)}, repeats=repeats, device=device
    )
    steps = float(teacher.settle(x).steps_per_sample.float().mean())
    b = x.shape[0]
    return {
        "student_seconds_per_image": times["student"] / b,
        "teacher_seconds_per_image": times["teacher"] / b,
        "speedup": times["teacher"] / times["student"],
        "teacher_steps_mean": steps,
        "teacher_backend": teacher.backend_name,
        "batch": b,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
