"""What the seed paper's experiment is, as steps: one budget → a list of ephw commands.

A :class:`Step` is one ephw command (argv without ``--out``/``--resume``) whose run folder is
``<run_dir>/<name>``; the pipeline (:mod:`ephw.reproduce.pipeline`) skips a step whose
``model.pt`` exists, resumes one with a ``checkpoint.pt``, and runs the rest. A :class:`Budget`
fixes every size (epochs, seeds, widths, PGD iterations); ``cpu`` is what a 2-core CPU does in
about a day, ``gpu`` is the paper's scale, ``smoke`` exercises every stage in seconds (tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from ephw.errors import ConfigError

STAGES: tuple[str, ...] = ("train-ep", "baselines", "distill", "timing", "robustness", "report")
"""Stages in the order they run; each needs the models of the stages before it. ``timing`` times
every distilled student against its teacher in one run (``ephw bench students``)."""

#: The Eq. 8 student of the digital teacher on the ``lava-fixed`` teacher's training subset: what a
#: student of the Loihi-2 teacher is compared with (same images, only the teacher differs).
SUBSET_CONTROL = "Distilled BP-CNN (digital teacher, Loihi-2 subset)"

#: The control of claim 7 (the student's robustness comes from the EBM teacher, not from
#: distillation as such): per student family of the EP-CNN, the family of the same student
#: distilled from the BP-CNN of the same topology and activation (student seed k from ``bp-s<k>``).
BP_TEACHER_CONTROLS: dict[str, str] = {
    "Distilled BP-CNN": "Distilled BP-CNN (BP teacher)",
    "Distilled BP-CNN (ll)": "Distilled BP-CNN (ll, BP teacher)",
}


@dataclass(frozen=True)
class Budget:
    """Sizes of one reproduction.

    Attributes:
        name: ``cpu``, ``gpu`` or ``smoke``.
        config: EP-CNN architecture (a named config, docs/configs.md).
        ep_epochs, ep_seeds: EP training epochs and seeds.
        ep_args: extra ``train ep`` arguments (step counts for ``smoke``).
        ff_epochs, ff_seeds: epochs and seeds of every feed-forward model (BP, Adv, students).
        adv_pgd_steps, adv_eps: PGD-ℓ2 iterations and radius of Adv-CNN training (paper: 200, 0.5).
        adv_epochs: Adv-CNN epochs (``None``: ``ff_epochs``); each costs ``adv_pgd_steps + 1`` BP epochs.
        resnet_width: first-stage width of the ResNet-18 student (64 = standard).
        distill_args: extra ``distill`` arguments (``--cache-teacher`` settles the training set once).
        lava_train_n: training images the ``lava-fixed`` teacher settles (``None``: all); with a
            subset, a control student of the digital teacher on the same images is trained too.
        ff_args: extra arguments of every feed-forward trainer (``smoke``: batch size, test size).
    """

    name: str
    config: str
    ep_epochs: int
    ep_seeds: tuple[int, ...]
    ff_epochs: int
    ff_seeds: tuple[int, ...]
    adv_pgd_steps: int
    adv_eps: float = 0.5
    adv_epochs: int | None = None
    resnet_width: int = 64
    ep_args: tuple[str, ...] = ()
    distill_args: tuple[str, ...] = ()
    ff_args: tuple[str, ...] = ()
    lava_train_n: int | None = None


BUDGETS: dict[str, Budget] = {
    # 2-core CPU: cpu-small (1/8 of the paper's channels), one EP seed, 3 seeds of every
    # feed-forward model; teachers settle the un-augmented training set once (--cache-teacher).
    "cpu": Budget(
        name="cpu",
        config="cpu-small",
        ep_epochs=20,
        ep_seeds=(0,),
        ff_epochs=20,
        ff_seeds=(0, 1, 2),
        adv_pgd_steps=5,
        adv_epochs=10,
        resnet_width=16,
        distill_args=("--cache-teacher",),
        lava_train_n=5000,
    ),
    # The paper's scale (Laborieux et al. 2021: 120 epochs; 5 seeds; Adv-CNN with 200 PGD steps).
    "gpu": Budget(
        name="gpu",
        config="paper",
        ep_epochs=120,
        ep_seeds=(0, 1, 2, 3, 4),
        ff_epochs=120,
        ff_seeds=(0, 1, 2, 3, 4),
        adv_pgd_steps=200,
        resnet_width=64,
        ep_args=("--free-steps", "250", "--nudge-steps", "30"),
    ),
    # Every stage in seconds on a tiny image tree (tests of the pipeline's logic).
    "smoke": Budget(
        name="smoke",
        config="cpu-small",
        ep_epochs=1,
        ep_seeds=(0,),
        ff_epochs=1,
        ff_seeds=(0, 1),
        adv_pgd_steps=1,
        resnet_width=4,
        ep_args=("--batch-size", "8", "--free-steps", "3", "--nudge-steps", "2", "--eval-steps", "5"),
        distill_args=("--cache-teacher", "--teacher-steps", "5", "--timing-batch", "4", "--batch-size", "8"),
        ff_args=("--batch-size", "8"),
        lava_train_n=8,
    ),
}


@dataclass(frozen=True)
class Step:
    """One ephw command of the pipeline.

    Attributes:
        stage: one of :data:`STAGES`.
        name: run folder name under the run directory (``ep-s0``, ``bp-s1``, …).
        argv: the ephw command line without ``--out``/``--resume``.
        model: the model family this run is a seed of (``EP-CNN``, ``BP-CNN``, …), as reports name it.
        seed: its training seed.
        ship_as: shipped name (``ephw/pretrained/<ship_as>.pt``) for the first seed, else ``None``.
        needs: names of steps whose ``model.pt`` this one reads (the teacher).
    """

    stage: str
    name: str
    argv: tuple[str, ...]
    model: str
    seed: int
    ship_as: str | None = None
    needs: tuple[str, ...] = ()


def build_plan(data: str, budget: Budget | str, data_root: str | None = None) -> list[Step]:
    """Every training step of a reproduction of the paper on ``data`` (``cifar10``/``cifar100``).

    The robustness and report stages are not commands of one model; the pipeline runs them from
    the models these steps leave behind.
    """
    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise ConfigError(f"unknown budget {budget!r}: use one of {', '.join(BUDGETS)}")
        budget = BUDGETS[budget]
    b = budget
    root = ("--data-root", data_root) if data_root else ()
    common = ("--data", data, *root)
    steps: list[Step] = []

    def ship(kind: str, seed: int, seeds: tuple[int, ...]) -> str | None:
        return f"{data}-{kind}" if seed == seeds[0] else None

    for seed in b.ep_seeds:
        argv = ("train", "ep", *common, "--config", b.config, "--epochs", str(b.ep_epochs), "--seed", str(seed))
        steps.append(Step("train-ep", f"ep-s{seed}", argv + b.ep_args, "EP-CNN", seed, ship("ep", seed, b.ep_seeds)))

    baselines = [
        ("bp", "BP-CNN", ("train", "bp", "--activation", "laborieux")),
        ("bp-relu", "BP-CNN (ReLU+BN)", ("train", "bp", "--activation", "relu-bn")),
        (
            "adv",
            "Adv-CNN",
            ("train", "adv", "--activation", "laborieux", "--eps", str(b.adv_eps), "--pgd-steps", str(b.adv_pgd_steps)),
        ),
    ]
    for kind, model, head in baselines:
        epochs = b.adv_epochs if kind == "adv" and b.adv_epochs else b.ff_epochs
        for seed in b.ff_seeds:
            argv = (*head, *common, "--config", b.config, "--epochs", str(epochs), *b.ff_args, "--seed", str(seed))
            steps.append(Step("baselines", f"{kind}-s{seed}", argv, model, seed, ship(kind, seed, b.ff_seeds)))

    teacher = f"ep-s{b.ep_seeds[0]}"
    students = [
        ("distilled", "Distilled BP-CNN", ("--student", "cnn")),
        ("distilled-ll", "Distilled BP-CNN (ll)", ("--student", "cnn-ll")),
        ("resnet18", "Distilled ResNet-18", ("--student", "resnet18", "--width", str(b.resnet_width))),
        (
            "distilled-pcm",
            "Distilled BP-CNN (PCM teacher)",
            ("--teacher-backend", "crossbar", "--crossbar-preset", "pcm"),
        ),
        ("distilled-lava-fixed", "Distilled BP-CNN (Loihi-2 teacher)", ("--teacher-backend", "lava-fixed")),
    ]
    if b.lava_train_n:  # the lava teacher's control: the digital teacher on the same training subset
        students.insert(-1, ("distilled-subset", SUBSET_CONTROL, ("--student", "cnn")))
    # claim 7's control: the Eq. 8 and ℓℓ students again, each seed distilled from the BP-CNN of its seed
    bp_students = [
        ("distilled-bpteacher", BP_TEACHER_CONTROLS["Distilled BP-CNN"], ("--student", "cnn")),
        ("distilled-bpteacher-ll", BP_TEACHER_CONTROLS["Distilled BP-CNN (ll)"], ("--student", "cnn-ll")),
    ]

    def distill_argv(teacher: str, extra: tuple[str, ...], seed: int, subset: tuple[str, ...] = ()) -> tuple[str, ...]:
        return (
            "distill",
            *common,
            "--teacher",
            f"@{teacher}",  # the pipeline puts the teacher's model.pt here
            *extra,
            "--epochs",
            str(b.ff_epochs),
            *b.distill_args,
            *subset,
            "--seed",
            str(seed),
        )

    # seed-major: a call cut short leaves one seed of every student family (the shipped ones) first
    for seed in b.ff_seeds:
        for kind, model, extra in students:
            on_subset = kind in ("distilled-lava-fixed", "distilled-subset") and b.lava_train_n
            subset = ("--train-n", str(b.lava_train_n)) if on_subset else ()
            argv = distill_argv(teacher, extra, seed, subset)
            steps.append(
                Step("distill", f"{kind}-s{seed}", argv, model, seed, ship(kind, seed, b.ff_seeds), (teacher,))
            )
        bp = f"bp-s{seed}"  # paired: student seed k, BP-CNN seed k
        for kind, model, extra in bp_students:
            argv = distill_argv(bp, extra, seed)
            steps.append(Step("distill", f"{kind}-s{seed}", argv, model, seed, ship(kind, seed, b.ff_seeds), (bp,)))
    return steps
