"""The package's import layers (pyproject's [tool.importlinter], docs/architecture.md) and no import cycles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package and pyproject under ``root`` (the package imported from there)."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (make setup installs it)")
    env = {"PYTHONPATH": str(root), "PATH": str(exe.parent)}
    return subprocess.run(
        [str(exe), "--no-cache", str(root / "pyproject.toml")], cwd=root, env=env, capture_output=True, text=True
    )


def test_the_layer_contract_is_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "ephw layers KEPT" in run.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """A copy of the package where the model (a low layer) imports the CLI (the top): the check fails on it."""
    shutil.copytree(ROOT / "ephw", tmp_path / "ephw", ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "ephw" / "model" / "config.py"
    planted.write_text(planted.read_text() + "\nimport ephw.cli.main  # planted upward import\n")
    run = lint_imports(tmp_path)
    assert run.returncode != 0
    assert "ephw layers BROKEN" in run.stdout
    assert "ephw.model.config -> ephw.cli.main" in run.stdout


def test_no_package_imports_another_that_imports_it() -> None:
    """No cycle between the top-level modules and packages of ephw (function-local imports count too)."""
    graph = grimp.build_graph("ephw")
    tops = sorted({".".join(m.split(".")[:2]) for m in graph.modules if m.count(".") >= 1})
    cycles = [
        (a, b)
        for i, a in enumerate(tops)
        for b in tops[i + 1 :]
        if graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True)
    ]
    assert not cycles, f"import cycles between {cycles}"
