"""Distil one student from the digital teacher and one from a hardware-simulated (PCM crossbar) teacher.

    python examples/distill_from_hardware.py [--epochs 10] [--student cnn] [--out runs/distill-hw]

Both students have the same architecture, seed and budget; only the backend the bundled
digits EP-CNN settles on differs: ``async`` (exact digital arithmetic) vs ``crossbar`` with
the ``pcm`` preset (programming noise, drift, 1/f read noise; docs/crossbar.md). The teacher
settles every training batch on its backend as it comes, so the second student learns the
fixed points of the chip. Prints their metrics side by side; a few minutes on one CPU core.
The same runs on the command line:

    ephw distill --student cnn --teacher-backend async --epochs 10 --out runs/distill-hw/async
    ephw distill --student cnn --teacher-backend crossbar --crossbar-preset pcm --teacher-tol 1e-4 \\
        --epochs 10 --out runs/distill-hw/crossbar-pcm
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ephw.cli.common import print_table
from ephw.distill.trainer import STUDENT_KINDS, DistillSettings, distill

TEACHERS = {
    "async": ({}, 1e-6),
    # read noise never lets the residual reach 1e-6: the crossbar stops a sample on its
    # residual plateau (docs/crossbar.md); 1e-4 stops the noise-free part earlier
    "crossbar-pcm": ({"preset": "pcm"}, 1e-4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--student", default="cnn", choices=STUDENT_KINDS)
    parser.add_argument("--out", default="runs/distill-hw")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name, (options, tol) in TEACHERS.items():
        out = Path(args.out) / name
        shutil.rmtree(out, ignore_errors=True)  # a fresh run each time
        backend = name.split("-")[0]
        m = distill(
            DistillSettings(
                student=args.student,
                teacher_backend=backend,
                teacher_backend_options=options,
                teacher_tol=tol,
                epochs=args.epochs,
                seed=args.seed,
                out=str(out),
                progress=False,
            )
        )
        t = m["timing"]
        rows.append(
            {
                "teacher": name,
                "test_accuracy": m["test_accuracy"],
                "teacher_accuracy": m["teacher_test_accuracy"],
                "agreement": m["agreement"],
                "layer_mse": " ".join(f"{v:.4f}" for v in m["layer_mse"]) if m["layer_mse"] else "-",
                "teacher_steps": m["teacher_steps_mean"],
                "student_us_per_image": t["student_seconds_per_image"] * 1e6,
                "teacher_us_per_image": t["teacher_seconds_per_image"] * 1e6,
                "speedup": t["speedup"],
            }
        )
    print(f"{args.student} students of the bundled digits EP-CNN, {args.epochs} epochs (metrics.json in {args.out}/*)")
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
