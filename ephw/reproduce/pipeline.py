"""``ephw reproduce DATA``: run the paper's experiment stage by stage, resumable.

Every step of :func:`~ephw.reproduce.plan.build_plan` runs as the ephw command it is (so a step
is exactly what a user would type; its ``model.pt`` meta records that command). A step whose
``model.pt`` exists is skipped, one with a ``checkpoint.pt`` resumes, a step whose teacher is
missing waits for a later call. Finished models of the first seed are copied into the package
(``ephw/pretrained/<data>-<kind>.pt``) with the command, seed and data sha256 in their meta.
Everything is written under one run directory; each stage is locked while a call runs it, so two
calls may run different stages side by side (robustness on the baselines while the EP-CNN trains)
but never the same stage twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ephw.checkpoint import file_sha256, load_checkpoint, read_meta, update_meta
from ephw.data import load_dataset
from ephw.errors import ConfigError, EphwError
from ephw.inference import settle_row
from ephw.outputs import OutputLock, append_line, atomic_write, ensure_dir
from ephw.pretrained.catalog import PRETRAINED_DIR
from ephw.reproduce.plan import STAGES, Budget, Step, build_plan
from ephw.robustness.shards import Shard

#: Test images of the check a shipped EP-CNN gets: ``ephw settle --model <name> --data DATA --n 1000``.
SHIPPED_CHECK_N = 1000

#: Stages that are not training steps: they run over the run folder's finished models.
STAGE_COMMANDS = ("timing", "robustness", "report")

#: Runs one ephw command line (``ephw.cli.main.main`` by default); returns its exit status.
Runner = Callable[[list[str]], int]


@dataclass
class StepStatus:
    """What the pipeline did with one step: ``done`` (skipped), ``ran``, ``resumed``, ``waiting``, ``failed``,
    ``stopped`` (its command was interrupted: SIGTERM or Ctrl-C)."""

    step: Step
    status: str
    folder: Path


#: exit codes of an interrupted command (``ephw``'s SIGTERM and Ctrl-C): the step stopped, it did not fail
STOPPED_CODES = (128 + signal.SIGTERM, 130)


def default_runner(argv: list[str]) -> int:
    """Run ``ephw ARGV`` in a child process (the CLI passes its own in-process ``main`` instead)."""
    return subprocess.call([sys.executable, "-m", "ephw", *argv])


def shipped_settle_row(model: Path, data: str, data_root: str | None, n: int, device: str | None) -> dict[str, Any]:
    """What ``ephw settle --model MODEL --data DATA --n N --json`` prints, with that command's defaults
    (:func:`ephw.inference.settle_row`), computed in this process."""
    net = load_checkpoint(model).model(device=device or "cpu")
    return settle_row(net, load_dataset(data, "test", data_root).subset(n))


def data_sha256(data: str, data_root: str | None) -> str:
    """sha256 of the dataset source: the tarball's bytes, or of ``path + sha256`` of every file of a folder."""
    from ephw.data.sources import resolve_root

    source = resolve_root(data, data_root).path
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if source.is_file():
            return h.hexdigest()
        digest.update(f"{f.relative_to(source).as_posix()}\0{h.hexdigest()}\n".encode())
    return digest.hexdigest()


class Pipeline:
    """The steps of one reproduction in ``run_dir`` (see module docstring)."""

    def __init__(
        self,
        data: str,
        budget: Budget | str,
        run_dir: str | Path,
        data_root: str | None = None,
        runner: Runner = default_runner,
        ship_dir: str | Path | None = PRETRAINED_DIR,
        device: str | None = None,
        docs_dir: str | Path = "docs/results",
        shard: Shard | None = None,
        parts: Sequence[str] | None = None,
        only_steps: Sequence[str] | None = None,
        first: Sequence[str] | None = None,
    ) -> None:
        self.data = data
        self.data_root = data_root
        self.steps = build_plan(data, budget, data_root)
        self.budget_name = budget.name if isinstance(budget, Budget) else budget
        self.run_dir = Path(run_dir)
        self.runner = runner
        self.ship_dir = Path(ship_dir) if ship_dir is not None else None
        self.device = device
        self.docs_dir = Path(docs_dir)
        self.shard = shard  # the robustness stage computes only this shard's rows (ephw.robustness.shards)
        self.parts = tuple(parts) if parts else None  # ... and only these parts of its grid (None: all)
        if self.parts:
            from ephw.reproduce.robustness import part_names

            known = part_names(self)
            bad = [p for p in self.parts if p not in known]
            if bad:
                raise ConfigError(f"unknown robustness part {bad[0]!r}: use one of {', '.join(known)}")
        self.only_steps = tuple(only_steps) if only_steps else None  # training stages: only these steps
        if self.only_steps:
            known = [st.name for st in self.steps]
            bad = [n for n in self.only_steps if n not in known]
            if bad:
                raise ConfigError(f"unknown step {bad[0]!r}: use one of {', '.join(known)}")
        self.first = tuple(first or ())  # the robustness stage runs these models' rows first
        if self.first:
            from ephw.reproduce.robustness import part_configs

            known = sorted({m["name"] for _, raw in part_configs(self) for m in raw["models"]})
            bad = [n for n in self.first if n not in known]
            if bad:
                raise ConfigError(f"unknown model {bad[0]!r} for --first: use one of {', '.join(known)}")
        self._sha: str | None = None

    @staticmethod
    def default_ship_dir() -> Path:
        return PRETRAINED_DIR

    def run(self, stages: Sequence[str], log: Callable[[str], None] = print) -> list[StepStatus]:
        """Run ``stages`` in pipeline order: the training steps, then robustness, then the report."""
        statuses = self.run_steps([s for s in stages if s not in STAGE_COMMANDS], log)
        if any(s.status in ("failed", "stopped") for s in statuses):
            return statuses
        if "timing" in stages:
            self.time_students(log)
        if "robustness" in stages:
            from ephw.reproduce.robustness import run_robustness

            run_robustness(self, log)
        if "report" in stages:
            page = self.write_report()
            log(f"[report] wrote {page}")
        return statuses

    def time_students(self, log: Callable[[str], None] = print) -> Path | None:
        """Time every finished student against its teacher in one run (``ephw bench students``).

        Writes ``<run_dir>/speedup.json``, which the results page takes its speed-ups from. Skipped
        when that file already covers every finished student's current model file; a student
        trained or retrained since is the reason to time all of them again (the ratios must share
        one run). ``None`` when no student is finished or the command failed.
        """
        from ephw.bench.students import SPEEDUP_FILE

        students, untimed = self.timing_status()
        if not students:
            log("[timing] no distilled student finished yet")
            return None
        record = self.run_dir / SPEEDUP_FILE
        if not untimed:
            log(f"[timing] {record} covers all {len(students)} students")
            return record
        argv = ["bench", "students", "--run-dir", str(self.run_dir), "--out", str(record)]
        argv += ["--data-root", self.data_root] if self.data_root else []
        argv += ["--device", self.device] if self.device else []
        log(f"[timing] ephw {shlex.join(argv)}")
        code = self.runner(argv)
        if code != 0 or not record.is_file():
            log(f"[timing] failed (exit {code}); rerun to retry")
            return None
        return record

    def timing_status(self) -> tuple[list[str], list[str]]:
        """``(finished students, those of them the run folder's speedup.json does not cover)``: step names."""
        from ephw.bench.students import current_timing

        students = [st.name for st in self.steps if st.stage == "distill" and self.is_done(st)]
        timed = (current_timing(self.run_dir) or {}).get("students", {})
        return students, [name for name in students if name not in timed]

    def write_report(self) -> Path:
        """Regenerate the results page from the run directory (models' meta, robustness results)."""
        from ephw.reproduce.report import write_results_page
        from ephw.reproduce.robustness import robustness_summary, write_part_reports

        write_part_reports(self)
        return write_results_page(self.data, self.steps, self.run_dir, self.docs_dir, robustness_summary(self))

    # ------------------------------------------------------------------ steps
    def folder(self, step: Step) -> Path:
        return self.run_dir / step.name

    def is_done(self, step: Step) -> bool:
        return (self.folder(step) / "model.pt").is_file()

    def check_runnable(self, stages: Sequence[str]) -> None:
        """Refuse (:class:`ConfigError`, before anything is created or written) stages that only read
        trained models -- ``timing``, ``robustness``, ``report`` -- when no training stage comes with
        them and the run folder holds no trained model: a mistyped ``--run-dir`` must not turn the
        results page into "not trained yet"."""
        if any(s not in STAGE_COMMANDS for s in stages):
            return  # training stages create the models the later stages read
        if not self.run_dir.is_dir():
            raise ConfigError(
                f"--run-dir {self.run_dir} does not exist: no trained model to {'/'.join(stages)} "
                "(is the folder name right?); nothing was written"
            )
        if not any(self.is_done(step) for step in self.steps):
            raise ConfigError(
                f"--run-dir {self.run_dir} holds no trained model of this plan (no */model.pt): nothing to "
                f"{'/'.join(stages)} (is the folder name right?); nothing was written"
            )

    def command(self, step: Step) -> list[str]:
        """The full ephw argv of ``step``: teacher placeholders resolved, ``--out`` and ``--device`` added."""
        argv = [str(self.run_dir / a[1:] / "model.pt") if a.startswith("@") else a for a in step.argv]
        argv += ["--out", str(self.folder(step))]
        if self.device is not None:
            argv += ["--device", self.device]
        return argv

    def run_steps(self, stages: Sequence[str], log: Callable[[str], None] = print) -> list[StepStatus]:
        """Run (or skip, or resume) every step of ``stages``; stops at the first failure."""
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown stage {unknown[0]!r}: use one of {', '.join(STAGES)}")
        ensure_dir(self.run_dir)
        out: list[StepStatus] = []
        for step in self.steps:
            if step.stage not in stages or (self.only_steps and step.name not in self.only_steps):
                continue
            folder = self.folder(step)
            if self.is_done(step):
                self.ensure_stamped(step)
                out.append(StepStatus(step, "done", folder))
                self.ship(step)
                self.shipped_settle(step, log)
                continue
            missing = [n for n in step.needs if not (self.run_dir / n / "model.pt").is_file()]
            if missing:
                log(f"[{step.stage}] {step.name}: waiting for {', '.join(missing)}")
                out.append(StepStatus(step, "waiting", folder))
                continue
            argv = self.command(step)
            resumed = (folder / "checkpoint.pt").is_file()
            if resumed:
                argv.append("--resume")
            log(f"[{step.stage}] {step.name}: ephw {shlex.join(argv)}")
            self._record(step, "start", argv)
            code = self.runner(argv)
            if code != 0 or not self.is_done(step):
                status = "stopped" if code in STOPPED_CODES else "failed"
                self._record(step, status, argv, code=code)
                out.append(StepStatus(step, status, folder))
                log(f"[{step.stage}] {step.name}: {status} (exit {code}); rerun to resume it")
                break
            self._record(step, "finished", argv)
            self._stamp(step, argv)
            self.ship(step)
            self.shipped_settle(step, log)
            out.append(StepStatus(step, "resumed" if resumed else "ran", folder))
        return out

    def _record(self, step: Step, event: str, argv: list[str], **extra: Any) -> None:
        row = {"step": step.name, "stage": step.stage, "event": event, "command": shlex.join(["ephw", *argv]), **extra}
        append_line(self.run_dir / "pipeline.jsonl", json.dumps(row, sort_keys=True))

    # ------------------------------------------------------------------ provenance and shipping
    def sha(self) -> str:
        if self._sha is None:
            self._sha = data_sha256(self.data, self.data_root)
        return self._sha

    def ensure_stamped(self, step: Step) -> None:
        """Stamp a finished model that lacks the pipeline's provenance (trained by hand with the
        step's command). The stamp rewrites ``model.pt``, so it must happen before any robustness
        row hashes the file: the robustness stage calls this for every model it takes (``--list``
        and other read-only uses never do). A model that is not what the step trains is refused
        (:meth:`check_provenance`)."""
        if "pipeline_step" not in read_meta(self.folder(step) / "model.pt"):
            self._stamp(step, self.command(step))

    def check_provenance(self, step: Step) -> None:
        """Refuse (:class:`ConfigError`, one line) to vouch for a ``model.pt`` its own meta contradicts.

        The meta a trainer writes must match the step's command: the trainer (``train ep|bp|adv``,
        ``distill``), the dataset (and ``--data-root``), and every option of the step's command that
        the trainer records in its settings -- ``--config`` (the architecture), ``--epochs``,
        ``--seed``, ``--activation``, ``--student``, ``--teacher`` (resolved), ``--teacher-backend``,
        ``--crossbar-preset`` … A model without recorded settings is refused too: nothing could be
        checked, and the stamp would state the command and data hash as facts.
        """
        path = self.folder(step) / "model.pt"
        reason = provenance_mismatch(step, read_meta(path), self.run_dir, self.data, self.data_root)
        if reason is not None:
            raise ConfigError(
                f"refusing to stamp {path} as step {step.name}: {reason}; move it away (the step then trains it) "
                f"or train it with the step's command (ephw reproduce {self.data} --list)"
            )

    def _stamp(self, step: Step, argv: list[str]) -> None:
        """Add the exact command, seed, model family and data hash to the finished model's meta,
        once :meth:`check_provenance` found the model to be what the step trains."""
        self.check_provenance(step)
        update_meta(
            self.folder(step) / "model.pt",
            {
                "command": shlex.join(["ephw", *[a for a in argv if a != "--resume"]]),
                "seed": step.seed,
                "model": step.model,
                "data_sha256": self.sha(),
                "pipeline_step": step.name,
            },
        )

    def ship(self, step: Step) -> Path | None:
        """Copy the step's ``model.pt`` to ``<ship_dir>/<ship_as>.pt`` if it is meant to ship and differs."""
        if self.ship_dir is None or step.ship_as is None:
            return None
        src = self.folder(step) / "model.pt"
        dst = self.ship_dir / f"{step.ship_as}.pt"
        data = src.read_bytes()
        if not dst.is_file() or dst.read_bytes() != data:
            atomic_write(dst, data)
        return dst

    def shipped_settle(self, step: Step, log: Callable[[str], None] = print) -> dict[str, Any] | None:
        """What ``ephw settle --model <shipped name> --data DATA --n 1000`` reports for a shipped EP-CNN.

        Run once per model file (through the pipeline's runner, on the step's ``model.pt``, which
        the shipped file copies byte for byte) and kept as ``<step folder>/shipped-settle.json``:
        the user-facing command, the model's sha256 and the settle row. The results page quotes
        it, so a fresh clone's command can be checked against the page. ``None`` for other steps
        and without a ship folder (``--no-ship``).
        """
        if step.stage != "train-ep" or step.ship_as is None or self.ship_dir is None or not self.is_done(step):
            return None
        model = self.folder(step) / "model.pt"
        record = self.folder(step) / "shipped-settle.json"
        sha = file_sha256(model)
        if record.is_file():
            try:
                kept = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                kept = {}
            if kept.get("model_sha256") == sha:
                return kept
        root = ["--data-root", self.data_root] if self.data_root else []
        tail = ["--data", self.data, *root, "--n", str(SHIPPED_CHECK_N)]
        try:
            row = shipped_settle_row(model, self.data, self.data_root, SHIPPED_CHECK_N, self.device)
        except EphwError as exc:
            log(f"[{step.stage}] {step.name}: the shipped-model check failed ({exc}); rerun to retry")
            return None
        kept = {"command": shlex.join(["ephw", "settle", "--model", step.ship_as, *tail]), "model_sha256": sha, "row": row}
        atomic_write(record, json.dumps(kept, indent=1, sort_keys=True) + "\n")
        log(f"[{step.stage}] {step.name}: {kept['command']} -> accuracy {row.get('accuracy')}")
        return kept

    def lock(self, stages: Sequence[str] = STAGES) -> ExitStack:
        """Hold one lock per stage of ``stages`` (``<run_dir>/.stage-<name>.lock``) until the stack closes.

        With a shard the robustness stage's lock is the shard's own
        (``.stage-robustness.shard-K-of-N.lock``), with ``parts`` the parts' own
        (``.stage-robustness.part-NAME…``), and a training stage limited to ``only_steps`` its steps'
        own (``.stage-distill.step-NAME…``): the shards, parts (and chosen steps) of one run go side
        by side; two processes on the same part and shard are still kept apart by its results
        file's lock, two on the same step by its training folder's lock.
        """
        ensure_dir(self.run_dir)
        stack = ExitStack()
        try:
            for stage in stages:
                name = stage
                if stage == "robustness" and self.parts:
                    name += "".join(f".part-{p}" for p in self.parts)
                if stage == "robustness" and self.shard is not None:
                    name += f".shard-{self.shard.index}-of-{self.shard.count}"
                if stage not in STAGE_COMMANDS and self.only_steps:
                    name += "".join(f".step-{n}" for n in self.only_steps)
                stack.enter_context(OutputLock(self.run_dir / f".stage-{name}"))
        except BaseException:
            stack.close()
            raise
        return stack


def print_status(statuses: list[StepStatus], file: Any = sys.stdout) -> None:
    for s in statuses:
        print(f"{s.step.stage:10s} {s.step.name:24s} {s.status}", file=file)


#: Step options whose value is no setting to compare (where the run writes, where it runs).
_UNCHECKED = frozenset({"out", "device", "resume", "progress", "no_progress"})


def step_options(argv: Sequence[str]) -> dict[str, str | bool]:
    """``--name value`` / ``--flag`` pairs of an ephw command line as ``{name_with_underscores: value}``
    (a flag without a value is ``True``)."""
    out: dict[str, str | bool] = {}
    items = list(argv)
    i = next((k for k, a in enumerate(items) if a.startswith("--")), len(items))
    while i < len(items):
        name = items[i][2:].replace("-", "_")
        if i + 1 < len(items) and not items[i + 1].startswith("--"):
            out[name], i = items[i + 1], i + 2
        else:
            out[name], i = True, i + 1
    return out


def _same_value(given: str | bool, recorded: Any) -> bool:
    """Whether a command-line value ``given`` is what a trainer recorded as ``recorded``."""
    if given is True or isinstance(recorded, bool):
        return recorded is True if given is True else str(given).lower() == str(recorded).lower()
    if isinstance(recorded, (list, tuple)):
        parts = [p for p in str(given).split(",") if p]
        return len(parts) == len(recorded) and all(_same_value(p, r) for p, r in zip(parts, recorded))
    if isinstance(recorded, (int, float)):
        try:
            return math.isclose(float(given), float(recorded), rel_tol=1e-9, abs_tol=0.0)
        except ValueError:
            return False
    return recorded is not None and str(recorded) == str(given)


def _same_path(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()


def provenance_mismatch(
    step: Step, meta: dict[str, Any], run_dir: Path, data: str, data_root: str | None
) -> str | None:
    """Why ``meta`` (a ``model.pt``'s) is not the model ``step`` trains, or ``None`` when every recorded fact fits.

    See :meth:`Pipeline.check_provenance`.
    """
    trainer = "distill" if step.argv[0] == "distill" else step.argv[1]
    if meta.get("trainer") != trainer:
        made = meta.get("trainer")
        return f"it was made by {made!r}, the step runs {trainer!r}" if made else "its meta names no trainer"
    if meta.get("data") != data:
        return f"it was trained on {meta.get('data')!r}, the step trains on {data!r}"
    settings = meta.get("settings")
    if not isinstance(settings, dict):
        return "its meta records no training settings, so nothing could be checked"
    if not _same_path(settings.get("data_root"), data_root):
        return f"it read its data from {settings.get('data_root')!r}, the step from {data_root!r}"
    for name, given in step_options(step.argv).items():
        if name in _UNCHECKED or name in ("data", "data_root"):
            continue
        if name == "teacher":
            want = run_dir / str(given)[1:] / "model.pt" if str(given).startswith("@") else Path(str(given))
            if not _same_path(settings.get("teacher"), want):
                return f"its teacher was {settings.get('teacher')!r}, the step's is {str(want)!r}"
            continue
        recorded, found = _recorded(settings, name)
        if not found:
            if name in ("epochs", "seed", "config"):  # what every trainer records: its absence is a foreign file
                return f"its settings record no {name}"
            continue
        if not _same_value(given, recorded):
            return f"its {name} is {recorded!r}, the step's is {given if given is True else str(given)!r}"
    return None


def _recorded(settings: dict[str, Any], name: str) -> tuple[Any, bool]:
    """``(value, found)`` of option ``name`` in a trainer's settings; ``--crossbar-X`` lives in a backend's options."""
    if name in settings:
        return settings[name], True
    key = name.removeprefix("crossbar_")
    for field, value in settings.items():
        if field.endswith("_options") and isinstance(value, dict) and key in value:
            return value[key], True
    return None, False
