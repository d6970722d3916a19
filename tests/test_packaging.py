"""The installed package: shipped folders, and the wheel carrying them."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from melody_lc.paths import shipped_dir


def test_shipped_folders_are_found():
    assert (shipped_dir("rules") / "README.md").is_file()
    assert (shipped_dir("models") / "README.md").is_file()
    with pytest.raises(ValueError):
        shipped_dir("elsewhere")


def test_installed_wheel_carries_models_and_rules():
    dist = metadata.distribution("melody-lc")
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        pytest.skip("editable install: the wheel's contents are checked on a regular install (as in CI)")
    names = {str(f) for f in dist.files or []}
    assert "melody_lc/_shipped/models/README.md" in names
    assert "melody_lc/_shipped/rules/README.md" in names
    assert "melody_lc/tui/app.tcss" in names  # the terminal UI's stylesheet


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os

    from melody_lc.fileio import atomic_path, make_temp_dir

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
        assert make_temp_dir(tmp_path / "d").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(mask)


def test_a_write_that_fails_names_its_file_and_leaves_nothing(tmp_path):
    import errno

    from melody_lc.fileio import atomic_path

    with pytest.raises(OSError) as e:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")  # a full disk names no file
    assert e.value.filename == str(tmp_path / "a.json") and e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
