"""Seconds per APGD iteration per image on the shipped CIFAR-10 EP-CNN, per unroll length K.

Sizes the unroll escalation (``checks.unroll``, docs/robustness.md): APGD-CE (official
``pyautoattack``) with ``bptt:K`` on the first ``--n`` class-balanced CIFAR-10 test images
(seed 0's subset of the robustness runs), ``--iters`` iterations, one restart, eps 0.4932.
An APGD iteration is one settle (the prediction) plus one backward through the K-step unroll;
APGD runs ``iters + 1`` of them per image (the first gradient at its random start). Also
times one plain settle of the clean images for reference. Wall and CPU seconds are both given:
on a shared machine the CPU seconds of the one thread are the cost.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/apgd_unroll_cost.py --k 29 60 120
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cifar10-ep")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.4932)
    ap.add_argument("--k", type=int, nargs="+", default=[29, 60, 120])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from pyautoattack.autopgd_base import APGDAttack

    import ephw
    from ephw.data import load_dataset
    from ephw.robustness.models import EPClassifier
    from ephw.robustness.runner import subset

    torch.set_num_threads(1)
    net = ephw.load_model(args.model, device=args.device)
    _, x, y = subset(load_dataset("cifar10", "test"), args.n, 0)
    x, y = x.to(args.device), y.to(args.device)
    clf = EPClassifier(net, "async", 250, 1e-4, grad="bptt:5").eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        clean = clf(x).argmax(1)
    settle = time.perf_counter() - t0
    out = {
        "model": args.model,
        "n": args.n,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "settle_s_per_image": round(settle / args.n, 4),
        "settle_steps": clf.settle_stats.as_dict()["settle_steps_mean"],
        "clean_correct": int((clean == y).sum()),
        "per_k": {},
    }
    for k in args.k:
        clf = EPClassifier(net, "async", 250, 1e-4, grad=f"bptt:{k}").eval()
        attack = APGDAttack(clf, norm="L2", eps=args.eps, n_iter=args.iters, n_restarts=1, seed=0, device=args.device)
        attack.loss = "ce"
        xs, ys = x[clean == y], y[clean == y]  # APGD attacks only the correctly classified images
        t0, c0 = time.perf_counter(), time.process_time()
        attack.perturb(xs, ys)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        per = secs / ((args.iters + 1) * len(xs))
        out["per_k"][k] = {
            "images": len(xs),
            "seconds": round(secs, 1),
            "cpu_seconds": round(cpu, 1),
            "s_per_iteration_per_image": round(per, 4),
            "cpu_s_per_iteration_per_image": round(cpu / ((args.iters + 1) * len(xs)), 4),
            "settle_steps_mean": clf.settle_stats.as_dict()["settle_steps_mean"],
        }
        print(json.dumps({k: out["per_k"][k]}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
