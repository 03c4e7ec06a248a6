"""Checking a ``--device`` string before any work starts."""

from __future__ import annotations

import torch

from ephw.errors import InputError


def resolve_device(spec: str | torch.device) -> torch.device:
    """``spec`` (``cpu``, ``cuda``, ``cuda:1``, ...) as a :class:`torch.device` this machine has.

    Raises :class:`InputError` with a one-line reason for a malformed name, a CUDA device on a
    torch build or machine without CUDA, or a device index that does not exist.
    """
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"--device {spec!r} is not a device name (cpu, cuda, cuda:1, ...): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise InputError(f"--device {spec}: {build} (torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type != "cpu":
        raise InputError(f"--device {spec}: ephw runs on cpu or cuda devices")
    return device
