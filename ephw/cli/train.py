"""``ephw train ep``, ``ephw train bp`` and ``ephw train adv``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from ephw.backends import backend_names
from ephw.bench.recipes import RECIPES, get_recipe
from ephw.cli.common import add_backend_option_flags, backend_options, positive_float
from ephw.errors import InputError
from ephw.model import ACTIVATIONS, CONFIG_NAMES, OUTPUTS
from ephw.training.train_adv import AdvTrainSettings, train_adv
from ephw.training.train_bp import BP_ACTIVATIONS, BP_CIFAR_DEFAULTS, BPTrainSettings, train_bp
from ephw.training.ep import NUDGINGS
from ephw.training.free_states import FREE_INITS
from ephw.training.train_ep import CIFAR_DEFAULTS, EPTrainSettings, ep_backends, train_ep

_DEF = EPTrainSettings()


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model")
    kinds = train.add_subparsers(dest="trainer", metavar="TRAINER", required=True)
    p = kinds.add_parser("ep", help="equilibrium propagation with symmetric nudging (Laborieux et al. 2021)")
    p.add_argument("--data", default=_DEF.data, help="digits|cifar10|cifar100")
    p.add_argument("--data-root", default=None, help="folder or .tar.gz holding the dataset")
    p.add_argument(
        "--recipe",
        default=None,
        help=f"CIFAR: a named recipe's settings as defaults (flags given override them): {', '.join(RECIPES)} "
        "(docs/training.md)",
    )
    p.add_argument(
        "--config",
        default=None,
        help=f"architecture: {', '.join(CONFIG_NAMES)} (default: digits for digits, cpu-small for CIFAR)",
    )
    p.add_argument("--output", default=_DEF.output, choices=OUTPUTS, help="softmax readout or dynamic MSE output layer")
    p.add_argument("--activation", default=_DEF.activation, choices=sorted(ACTIVATIONS))
    p.add_argument(
        "--init-scale",
        type=float,
        default=None,
        help="multiplier of PyTorch's default weight init (default: the config's)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default 20")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 (digits), 128 (CIFAR)")
    p.add_argument(
        "--lrs",
        type=_floats,
        default=None,
        help="learning rate per synapse layer, or one for all (default: 0.02 digits; 0.1,0.06,0.04,0.03,0.02 CIFAR)",
    )
    p.add_argument("--momentum", type=float, default=_DEF.momentum)
    p.add_argument(
        "--wds", type=_floats, default=None, help="weight decay per synapse layer, or one for all (default 3e-4)"
    )
    p.add_argument("--lr-min", type=float, default=_DEF.lr_min, help="final learning rate of the cosine schedule")
    p.add_argument("--beta", type=float, default=None, help="nudging strength (phases at +beta and -beta; default 0.5)")
    p.add_argument(
        "--nudging",
        default=None,
        choices=NUDGINGS,
        help="centered: phases at +beta and -beta; positive: +beta only (one nudged phase, O(beta) bias)",
    )
    p.add_argument(
        "--free-init",
        default=None,
        choices=FREE_INITS,
        help="free phase starts from the null state (zero), this image's last free state (image: persistent EP), "
        "or the previous batch's (batch, as Scellier et al. 2023)",
    )
    p.add_argument("--free-steps", type=int, default=None, help="T1: free-phase steps (default: 40 digits, 30 CIFAR)")
    p.add_argument("--nudge-steps", type=int, default=None, help="T2: steps of each nudged phase (default 10)")
    p.add_argument(
        "--tol", type=positive_float, default=None, help="stop phases early below this residual (default: fixed steps)"
    )
    p.add_argument(
        "--backend",
        default=None,
        help=f"settling backend of both phases: {', '.join(ep_backends())} (default async)",
    )
    add_backend_option_flags(p)
    p.add_argument(
        "--augment",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="random crop + flip (default: on for CIFAR)",
    )
    p.add_argument("--seed", type=int, default=_DEF.seed)
    p.add_argument("--eval-steps", type=int, default=_DEF.eval_steps, help="max steps when evaluating on the test set")
    p.add_argument("--checkpoint-every", type=int, default=_DEF.checkpoint_every, help="batches between checkpoints")
    p.add_argument("--max-batches", type=int, default=None, help="at most this many batches per epoch")
    p.add_argument("--out", default=None, help="run folder (default runs/ep-DATA-CONFIG)")
    p.add_argument("--device", default=_DEF.device)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--noise-aware",
        default=None,
        metavar="PRESET[@T]",
        help="noise-aware training: every batch on weights drawn from a chip of PRESET read at T s",
    )
    p.set_defaults(func=run_train_ep)
    add_classifier_parsers(kinds)


_BP = BPTrainSettings()
_ADV = AdvTrainSettings()


def add_classifier_parsers(kinds: argparse._SubParsersAction) -> None:
    """``train bp`` (BP-CNN) and ``train adv`` (Adv-CNN, PGD-l2 adversarial training)."""
    bp = kinds.add_parser("bp", help="BP-CNN: the EP-CNN topology trained with backpropagation")
    adv = kinds.add_parser("adv", help="Adv-CNN: BP-CNN trained on PGD-l2 examples (Madry et al.)")
    for p in (bp, adv):
        p.add_argument("--data", default=_BP.data, help="digits|cifar10|cifar100")
        p.add_argument("--data-root", default=None, help="folder or .tar.gz holding the dataset")
        p.add_argument(
            "--config",
            default=None,
            help=f"architecture: {', '.join(CONFIG_NAMES)} (default: digits for digits, cpu-small for CIFAR)",
        )
        p.add_argument(
            "--activation",
            default=_BP.activation,
            choices=BP_ACTIVATIONS,
            help="EP hard sigmoid (laborieux, clamp) or BatchNorm + ReLU (relu-bn)",
        )
        p.add_argument("--epochs", type=int, default=None, help=f"default {_BP.epochs}")
        p.add_argument("--batch-size", type=int, default=None, help="default: 32 (digits), 128 (CIFAR)")
        p.add_argument("--lrs", type=_floats, default=None, help="SGD learning rate per layer, or one for all (0.05)")
        p.add_argument("--momentum", type=float, default=_BP.momentum)
        p.add_argument("--wds", type=_floats, default=_BP.weight_decays, help="weight decay per layer or one for all")
        p.add_argument("--lr-min", type=float, default=_BP.lr_min, help="final learning rate of the cosine schedule")
        p.add_argument(
            "--augment", default=None, action=argparse.BooleanOptionalAction, help="random crop + flip (default: CIFAR)"
        )
        p.add_argument("--max-batches", type=int, default=None, help="at most this many batches per epoch")
        p.add_argument("--test-n", type=int, default=None, help="evaluate on the first N test images (default all)")
        p.add_argument("--seed", type=int, default=_BP.seed)
        p.add_argument("--checkpoint-every", type=int, default=_BP.checkpoint_every, help="batches between checkpoints")
        p.add_argument("--out", default=None, help="run folder (default runs/TRAINER-DATA-CONFIG)")
        p.add_argument("--device", default=_BP.device)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        p.add_argument(
            "--noise-aware",
            default=None,
            metavar="PRESET[@T]",
            help="noise-aware training: every batch on weights drawn from a chip of PRESET read at T s",
        )
    adv.add_argument("--eps", type=float, default=_ADV.eps, help="l2 radius of the training attack (images in [0, 1])")
    adv.add_argument("--pgd-steps", type=int, default=_ADV.pgd_steps, help="PGD iterations per batch (paper: 200)")
    adv.add_argument("--pgd-step-size", type=float, default=None, help="l2 step length (default 2.5 eps / steps)")
    adv.add_argument("--no-random-start", action="store_true", help="start PGD at the clean image")
    bp.set_defaults(func=run_train_classifier, trainer="bp")
    adv.set_defaults(func=run_train_classifier, trainer="adv")


def run_train_classifier(args: argparse.Namespace) -> int:
    defaults = {} if args.data == "digits" else BP_CIFAR_DEFAULTS

    def pick(value: Any, field: str) -> Any:
        return value if value is not None else defaults.get(field, getattr(_BP, field))

    config = pick(args.config, "config")
    common = dict(
        data=args.data,
        data_root=args.data_root,
        config=config,
        activation=args.activation,
        epochs=pick(args.epochs, "epochs"),
        batch_size=pick(args.batch_size, "batch_size"),
        lrs=pick(args.lrs, "lrs"),
        momentum=args.momentum,
        weight_decays=args.wds,
        lr_min=args.lr_min,
        augment=args.augment,
        max_batches=args.max_batches,
        test_n=args.test_n,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        out=args.out or f"runs/{args.trainer}-{args.data}-{config}",
        device=args.device,
        progress=not args.no_progress,
        resume=args.resume,
        noise_aware=args.noise_aware,
    )
    if args.trainer == "bp":
        settings = BPTrainSettings(**common)
        metrics = train_bp(settings)
    else:
        settings = AdvTrainSettings(
            **common,
            eps=args.eps,
            pgd_steps=args.pgd_steps,
            pgd_step_size=args.pgd_step_size,
            random_start=not args.no_random_start,
        )
        metrics = train_adv(settings)
    print(json.dumps({"out": settings.out, **metrics}))
    return 0


def run_train_ep(args: argparse.Namespace) -> int:
    defaults: dict[str, Any] = {} if args.data == "digits" else dict(CIFAR_DEFAULTS)
    if args.recipe is not None:
        if args.data == "digits":
            raise InputError("--recipe names CIFAR recipes; digits runs take their defaults or explicit flags")
        defaults = asdict(get_recipe(args.recipe).settings())

    def pick(value: Any, field: str) -> Any:
        return value if value is not None else defaults.get(field, getattr(_DEF, field))

    config = pick(args.config, "config")
    settings = EPTrainSettings(
        data=args.data,
        data_root=args.data_root,
        config=config,
        output=args.output,
        activation=args.activation,
        init_scale=args.init_scale,
        epochs=pick(args.epochs, "epochs"),
        batch_size=pick(args.batch_size, "batch_size"),
        lrs=pick(args.lrs, "lrs"),
        momentum=args.momentum,
        weight_decays=pick(args.wds, "weight_decays"),
        lr_min=args.lr_min,
        beta=pick(args.beta, "beta"),
        nudging=pick(args.nudging, "nudging"),
        free_init=pick(args.free_init, "free_init"),
        free_steps=pick(args.free_steps, "free_steps"),
        nudge_steps=pick(args.nudge_steps, "nudge_steps"),
        tol=pick(args.tol, "tol"),
        backend=pick(args.backend, "backend"),
        backend_options=backend_options(args, [pick(args.backend, "backend")]).get(pick(args.backend, "backend"), {}),
        augment=args.augment,
        seed=args.seed,
        eval_steps=args.eval_steps,
        checkpoint_every=args.checkpoint_every,
        max_batches=args.max_batches,
        out=args.out or f"runs/ep-{args.data}-{config}",
        device=args.device,
        progress=not args.no_progress,
        resume=args.resume,
        noise_aware=args.noise_aware,
    )
    if settings.backend not in backend_names():
        raise InputError(f"unknown backend {settings.backend!r}; valid backends: {', '.join(backend_names())}")
    metrics = train_ep(settings)
    print(json.dumps({"out": settings.out, **metrics}))
    return 0
