"""lava-nc 0.10.0 on Python 3.11: the import repair is needed, exact, and lets lava run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest

from ephw.lava import compat

pytestmark = pytest.mark.skipif(find_spec("lava") is None, reason="lava-nc not installed (make test installs it)")

RUN_SMALL_NETWORK = """
import numpy as np
from lava.proc.lif.process import LIF
from lava.proc.dense.process import Dense
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.run_conditions import RunSteps
src = LIF(shape=(3,), bias_mant=np.array([1.0, 2.0, 3.0]), vth=10.0)
dense = Dense(weights=np.eye(3) * 2.0)
dst = LIF(shape=(3,), vth=10.0)
src.s_out.connect(dense.s_in)
dense.a_out.connect(dst.a_in)
try:
    src.run(condition=RunSteps(num_steps=20), run_cfg=Loihi2SimCfg())
    print(src.v.get().tolist(), dst.v.get().tolist())
finally:
    src.stop()
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def var_model_source() -> str:
    spec = find_spec(compat.PATCHED_MODULE.rsplit(".", 1)[0])
    return (Path(spec.submodule_search_locations[0]) / "var_model.py").read_text()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the failure exists only on Python >= 3.11")
def test_without_the_repair_lava_fails_to_import():
    proc = run_python("import lava.proc.dense.process")
    assert proc.returncode != 0 and "mutable default" in proc.stderr and "ByteEncoder" in proc.stderr


def test_with_the_repair_lava_imports_and_runs_with_torch_loaded():
    proc = run_python("import torch\nfrom ephw.lava import compat\ncompat.install()\n" + RUN_SMALL_NETWORK)
    assert proc.returncode == 0, proc.stderr
    # LIF integrates its bias; spikes of the first population drive the second through Dense
    assert proc.stdout.strip() == "[9.0, 4.0, 0.0] [6.0, 0.0, 0.0]"


def test_patch_rewrites_exactly_the_bytencoder_defaults():
    source = var_model_source()
    patched = compat.patch_source(source)
    assert source.count("= ByteEncoder()") == 8 and "= ByteEncoder()" not in patched
    assert patched.count("= field(default_factory=ByteEncoder)") == 8
    assert len(patched.splitlines()) == len(source.splitlines())  # line numbers in tracebacks still match lava's


def test_unrecognised_source_is_refused():
    with pytest.raises(RuntimeError, match="0.10.0"):
        compat.patch_source("x = 1\n")


def test_install_is_idempotent():
    compat.install()
    compat.install()
    assert sum(isinstance(f, compat._Finder) for f in sys.meta_path) == 1


START_METHOD_THEN_LAVA = (
    """
import multiprocessing as mp
print(mp.get_start_method())  # fixes the context before lava is imported
import torch
from ephw.lava import compat
compat.install()
"""
    + RUN_SMALL_NETWORK
    + """
print(mp.get_start_method())
"""
)


def test_lava_runs_after_the_start_method_was_fixed_and_leaves_it_fork():
    proc = run_python(START_METHOD_THEN_LAVA)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "fork" and lines[-1] == "fork"


def test_lava_still_refuses_a_non_fork_start_method():
    proc = run_python(
        "import multiprocessing as mp\nmp.set_start_method('spawn')\nfrom ephw.lava import compat\ncompat.install()\n"
        "import lava.magma.runtime.message_infrastructure.multiprocessing"
    )
    assert proc.returncode != 0 and "context has already been set" in proc.stderr


def test_importing_ephw_and_its_lava_backend_does_not_touch_the_start_method():
    proc = run_python(
        "import multiprocessing as mp\nimport ephw\nfrom ephw.backends import lava\n"
        "print(mp.get_start_method(allow_none=True))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"


def test_start_method_patch_is_exact():
    spec = find_spec("lava.magma.runtime.message_infrastructure")
    source = (Path(spec.submodule_search_locations[0]) / "multiprocessing.py").read_text()
    patched = compat.patch_start_method(source)
    assert "mp.get_start_method(allow_none=True) != 'fork'" in patched
    assert len(patched.splitlines()) == len(source.splitlines())
    with pytest.raises(RuntimeError, match="0.10.0"):
        compat.patch_start_method("x = 1\n")
