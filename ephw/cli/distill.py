"""``ephw distill``: train a feed-forward student on an EP-CNN's fixed points (control: on a BP-CNN's activations)."""

from __future__ import annotations

import argparse
import json

from ephw.backends import DEFAULT_TOL, backend_names
from ephw.checkpoint import BUNDLED_MODEL
from ephw.cli.common import add_backend_option_flags, backend_options, positive_float
from ephw.cli.train import _floats
from ephw.distill.trainer import STUDENT_INITS, STUDENT_KINDS, DistillSettings, distill, student_run_folder

_DEF = DistillSettings()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train a feed-forward student on an EP-CNN's fixed points (attractor distillation, Eq. 8/9)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        help=f"EP checkpoint (default: bundled {BUNDLED_MODEL.name}), or a BP-CNN's (EP topology, feed-forward: "
        "the control teacher, picked by the file's format; no --teacher-backend)",
    )
    p.add_argument(
        "--student",
        default=_DEF.student,
        choices=STUDENT_KINDS,
        help="cnn: teacher's layers, Eq. 8 (states + output); cnn-ll: same net, Eq. 9 (output); resnet18: Eq. 9",
    )
    p.add_argument(
        "--teacher-backend",
        default=_DEF.teacher_backend,
        help=f"backend the teacher settles on: {', '.join(backend_names())} (default {_DEF.teacher_backend})",
    )
    add_backend_option_flags(p)
    p.add_argument("--teacher-steps", type=int, default=_DEF.teacher_steps, help="max settle steps of the teacher")
    p.add_argument("--teacher-tol", type=positive_float, default=DEFAULT_TOL, help="teacher settle tolerance (max|ds|)")
    p.add_argument(
        "--cache-teacher",
        action="store_true",
        help="settle the un-augmented training set once and reuse its fixed points (turns augmentation off)",
    )
    p.add_argument("--data", default=None, help="dataset (default: the teacher's)")
    p.add_argument("--data-root", default=None, help="folder or .tar.gz holding the dataset")
    p.add_argument("--epochs", type=int, default=_DEF.epochs, help=f"default {_DEF.epochs}")
    p.add_argument("--batch-size", type=int, default=_DEF.batch_size)
    p.add_argument(
        "--lrs",
        type=_floats,
        default=_DEF.lrs,
        help="SGD learning rate per layer (cnn: one per synapse layer; resnet18: stem, 4 stages, fc) or one for all",
    )
    p.add_argument(
        "--layer-weights",
        type=_floats,
        default=_DEF.layer_weights,
        help="Eq. 8 weight of each hidden layer's MSE term, or one for all (default 10)",
    )
    p.add_argument("--ce-weight", type=float, default=_DEF.ce_weight, help="weight of the output CE term")
    p.add_argument("--momentum", type=float, default=_DEF.momentum)
    p.add_argument("--wds", type=_floats, default=_DEF.weight_decays, help="weight decay per layer or one for all")
    p.add_argument("--lr-min", type=float, default=_DEF.lr_min, help="final learning rate of the cosine schedule")
    p.add_argument("--width", type=int, default=_DEF.width, help="resnet18 first-stage width (64 = standard)")
    p.add_argument(
        "--init", default=_DEF.init, choices=STUDENT_INITS, help="student init: random, or the teacher's weights"
    )
    p.add_argument(
        "--augment", default=None, action=argparse.BooleanOptionalAction, help="random crop + flip (default: CIFAR)"
    )
    p.add_argument("--max-batches", type=int, default=None, help="at most this many batches per epoch")
    p.add_argument(
        "--train-n", type=int, default=None, help="train on the first N (class-balanced) training images (default all)"
    )
    p.add_argument("--test-n", type=int, default=None, help="evaluate on the first N test images (default all)")
    p.add_argument("--timing-batch", type=int, default=_DEF.timing_batch, help="images in the final timing batch")
    p.add_argument("--seed", type=int, default=_DEF.seed)
    p.add_argument("--checkpoint-every", type=int, default=_DEF.checkpoint_every, help="batches between checkpoints")
    p.add_argument("--out", default=None, help="run folder (default runs/distill-STUDENT-BACKEND)")
    p.add_argument("--device", default=_DEF.device)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument(
        "--noise-aware",
        default=None,
        metavar="PRESET[@T]",
        help="noise-aware training: every batch on weights drawn from a chip of PRESET read at T s",
    )
    p.set_defaults(func=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    s = DistillSettings(
        teacher=args.teacher,
        student=args.student,
        teacher_backend=args.teacher_backend,
        teacher_backend_options=backend_options(args, [args.teacher_backend]).get(args.teacher_backend, {}),
        teacher_steps=args.teacher_steps,
        teacher_tol=args.teacher_tol,
        cache_teacher=args.cache_teacher,
        data=args.data,
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lrs=args.lrs,
        layer_weights=args.layer_weights,
        ce_weight=args.ce_weight,
        momentum=args.momentum,
        weight_decays=args.wds,
        lr_min=args.lr_min,
        width=args.width,
        init=args.init,
        augment=args.augment,
        max_batches=args.max_batches,
        test_n=args.test_n,
        train_n=args.train_n,
        timing_batch=args.timing_batch,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        progress=not args.no_progress,
        resume=args.resume,
        noise_aware=args.noise_aware,
    )
    if args.out is None:
        args.out = student_run_folder(s)
    s.out = args.out
    m = distill(s)
    if args.json:
        print(json.dumps({"out": s.out, **m}))
        return 0
    t = m["timing"]
    mse = ", ".join(f"{v:.4g}" for v in m["layer_mse"]) if m["layer_mse"] is not None else "-"
    print(f"{s.out}: {m['student']} student ({m['loss']}) of a {m['teacher']['backend']} teacher on {m['data']}")
    print(
        f"test accuracy {m['test_accuracy']:.4f} (teacher {m['teacher_test_accuracy']:.4f}), "
        f"agreement {m['agreement']:.4f}, layer MSE [{mse}], output CE {m['output_ce']:.4f}"
    )
    if t is None:  # a feed-forward teacher: nothing settles
        print("inference: the teacher is a forward pass of the same kind of network (no settle to compare with)")
        return 0
    print(
        f"inference per image: student {t['student_seconds_per_image'] * 1e6:.2f} us, teacher settle "
        f"{t['teacher_seconds_per_image'] * 1e6:.1f} us ({t['teacher_steps_mean']:.1f} steps): {t['speedup']:.1f}x"
    )
    return 0
