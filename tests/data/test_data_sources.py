"""Locating data: the accepted root forms, the default search and the not-found message."""

from __future__ import annotations

from pathlib import Path

import pytest

import ephw.data.sources as sources
from ephw.data.sources import resolve_root
from ephw.errors import DataError


def test_root_forms(tmp_path: Path, make_tree, make_tar, make_cifar10_pickles) -> None:
    pickles, _ = make_cifar10_pickles(tmp_path / "p")
    assert resolve_root("cifar10", tmp_path / "p") == sources.DataSource("pickle", pickles.resolve())
    assert resolve_root("cifar10", pickles).kind == "pickle"

    tree = make_tree(tmp_path / "t")
    assert resolve_root("cifar10", tree) == sources.DataSource("tree", tree.resolve())
    (tmp_path / "nested").mkdir()
    make_tree(tmp_path / "nested" / "cifar10")
    assert resolve_root("cifar10", tmp_path / "nested").path == (tmp_path / "nested" / "cifar10").resolve()

    tar_dir = tmp_path / "tars"
    tar_dir.mkdir()
    tar = make_tar(tree, tar_dir / "cifar10-jpeg.tar.gz")
    assert resolve_root("cifar10", tar_dir) == sources.DataSource("tar", tar.resolve())
    assert resolve_root("cifar10", str(tar)) == sources.DataSource("tar", tar.resolve())


def test_cifar100_tarball_is_not_cifar10(tmp_path: Path, make_tree, make_tar) -> None:
    make_tar(make_tree(tmp_path / "t"), tmp_path / "cifar100-jpeg.tar.gz")
    assert resolve_root("cifar100", tmp_path).kind == "tar"
    with pytest.raises(DataError, match="cifar10 not found in"):
        resolve_root("cifar10", tmp_path)


def test_explicit_root_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        resolve_root("cifar10", tmp_path / "nope")
    assert "cifar-10-batches-py" in str(err.value)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not a .tar.gz"):
        resolve_root("cifar10", tmp_path / "x.txt")
    with pytest.raises(DataError) as err:
        resolve_root("cifar10", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "'cifar-10-batches-py/'" in msg and "'cifar10-jpeg.tar.gz'" in msg and "--data-root" in msg


def test_default_search_order(tmp_path: Path, make_tree, make_cifar10_pickles, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir, cwd = tmp_path / "env", tmp_path / "cwd"
    make_tree(env_dir)
    make_cifar10_pickles(cwd / "data")
    monkeypatch.chdir(cwd)
    assert resolve_root("cifar10").kind == "pickle"  # ./data
    monkeypatch.setenv("EPHW_DATA", str(env_dir))
    assert resolve_root("cifar10") == sources.DataSource("tree", env_dir.resolve())  # $EPHW_DATA first


def test_default_search_includes_shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dirs = sources.default_search_dirs()
    repo_parent = Path(sources.__file__).resolve().parents[3]
    assert dirs == [tmp_path / "data", repo_parent / "shared" / "data", tmp_path.parent / "shared" / "data"]


def test_not_found_names_searched_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("EPHW_DATA", str(empty))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        resolve_root("cifar100")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("cifar100 not found: put the standard 'cifar-100-python/' folder")
    assert "'cifar100-jpeg.tar.gz' in --data-root DIR (or $EPHW_DATA, ./data); searched: " in msg
    searched = msg.split("searched: ", 1)[1]
    assert str(empty) in searched
    assert f"{tmp_path / 'data'} (missing)" in searched
    assert str(Path(sources.__file__).resolve().parents[3] / "shared" / "data") in searched


def test_not_found_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "default_search_dirs", lambda: [tmp_path / "a", tmp_path])
    with pytest.raises(DataError) as err:
        resolve_root("cifar10")
    assert str(err.value) == (
        "cifar10 not found: put the standard 'cifar-10-batches-py/' folder, a "
        "'train/<class>/*.jpg' + 'test/<class>/*.jpg' tree, or 'cifar10-jpeg.tar.gz' in "
        "--data-root DIR (or $EPHW_DATA, ./data); searched: $EPHW_DATA (unset), "
        f"{tmp_path / 'a'} (missing), {tmp_path}"
    )
