"""--device strings are checked before any work starts."""

from __future__ import annotations

import pytest
import torch

from ephw.cli.main import main
from ephw.device import resolve_device
from ephw.errors import InputError


def test_cpu_is_accepted():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "mps"])
def test_foreign_or_malformed_devices_are_refused(spec):
    with pytest.raises(InputError, match="--device"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_cli_error(capsys):
    assert main(["settle", "--device", "cuda", "--n", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ephw: error: --device cuda:") and "use --device cpu" in err[0]
