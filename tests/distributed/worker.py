"""One rank of a test run, started by ``torchrun`` from the tests (not collected by pytest).

``torchrun --standalone --nproc-per-node N tests/distributed/worker.py SPEC_JSON`` with
``SPEC_JSON`` = ``{"trainer": "ep"|"bp"|"adv"|"distill", "settings": {...}, "float64": bool}``:
joins the process group through :func:`ephw.distributed.init` (as ``python -m ephw`` does),
optionally switches torch's default dtype to float64 (the CLI has no dtype option), and runs
the trainer through its Python API. Rank 0 prints the final metrics as one JSON line.
"""

from __future__ import annotations

import json
import sys

import torch

from ephw import distributed


def main(spec: dict) -> None:
    if spec.get("float64"):
        torch.set_default_dtype(torch.float64)
    distributed.init("cpu")
    finished = False
    settings = dict(spec["settings"])
    for key in ("lrs", "weight_decays", "layer_weights"):
        if key in settings:
            settings[key] = tuple(settings[key])
    try:
        if spec["trainer"] == "ep":
            from ephw.training.train_ep import EPTrainSettings, train_ep

            metrics = train_ep(EPTrainSettings(**settings))
        elif spec["trainer"] == "bp":
            from ephw.training.train_bp import BPTrainSettings, train_bp

            metrics = train_bp(BPTrainSettings(**settings))
        elif spec["trainer"] == "adv":
            from ephw.training.train_adv import AdvTrainSettings, train_adv

            metrics = train_adv(AdvTrainSettings(**settings))
        elif spec["trainer"] == "distill":
            from ephw.distill.trainer import DistillSettings, distill

            metrics = distill(DistillSettings(**settings))
        else:
            raise SystemExit(f"unknown trainer {spec['trainer']!r}")
        if distributed.is_main():
            print(json.dumps(metrics, default=str))
        finished = True
    finally:
        distributed.teardown(finished)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
