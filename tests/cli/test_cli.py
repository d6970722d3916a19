"""The melody-lc command as a user runs it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, scale_notes, write_midi
from tests.melody.test_dataset import make_bad_files

HEAVY = ("torch", "music21", "note_seq", "symusic", "rtmidi", "textual", "pretty_midi", "numpy")


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter(); from melody_lc.cli import build_parser; "
        "p = build_parser(); p.format_help(); "
        f"print(time.perf_counter() - t); print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert float(out[0]) < 0.5
    assert out[1] == "", f"--help imported {out[1]}"
    res = run_cli("--help")
    assert res.returncode == 0 and "data" in res.stdout


def test_every_help_states_its_defaults_as_values_not_as_names():
    """A default in a help text is the value a user gets ("default: 2000"), not a constant's name."""
    import argparse
    import re

    from melody_lc.cli import build_parser

    def parsers(p):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    texts = [(p.prog, p.format_help()) for p in parsers(build_parser())]
    assert len(texts) > 10 and any("fit-stats" in prog for prog, _ in texts)
    named = [(prog, m) for prog, text in texts for m in re.findall(r"default:\s*[A-Z][A-Z0-9]*_[A-Z0-9_]+", text)]
    assert not named, named


def test_single_bad_file_is_one_line_and_exit_2(tmp_path):
    bad = make_bad_files(tmp_path / "bad")
    for name in ("empty.mid", "text.mid", "truncated.mid", "type2.mid"):
        res = run_cli("data", "build", "--midi", str(bad[name]), "--out", str(tmp_path / "o"))
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()
    res = run_cli("data", "build", "--midi", str(tmp_path / "missing.mid"))
    assert res.returncode == 2 and "no such file" in res.stderr
    res = run_cli("data", "build", "--midi-dir", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "not a directory" in res.stderr


def test_directory_build_prints_the_summary(tmp_path):
    src = tmp_path / "midi"
    make_bad_files(src)
    for i in range(3):
        write_midi(
            src / f"tune{i}.mid",
            [[(p + i, s, e, v) for p, s, e, v in scale_notes(20)]],
            time_signatures=((0, 2, 4),) if i == 1 else ((0, 4, 4),),
        )
    write_midi(src / "waltz.mid", [scale_notes(20)], time_signatures=((0, 3, 4),))
    out = tmp_path / "ds"
    res = run_cli("data", "build", "--midi-dir", str(src), "--out", str(out), "--workers", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    s = res.stdout
    assert "files read: 4" in s and "files or tunes skipped: 6" in s
    assert "empty.mid: empty file" in s and "type2.mid: type 2" in s
    assert "windows: train" in s and "meters (tunes): 4/4 2, 2/4 1, 3/4 1 (left out)" in s
    assert "keys (tunes):" in s and (out / "manifest.json").exists()
    again = run_cli("data", "build", "--midi-dir", str(src), "--out", str(out), "--quiet")
    assert again.returncode == 0 and "up to date" in again.stdout
    info = run_cli("data", "info", str(out))
    assert info.returncode == 0 and "files read: 4" in info.stdout
    res = run_cli("data", "info", str(tmp_path))
    assert res.returncode == 2 and "not a melody dataset" in res.stderr


def test_ctrl_c_leaves_no_half_dataset_and_resumes(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    for i in range(150):
        write_midi(src / f"t{i:03d}.mid", [[(60 + (i + k) % 24, k * 2, k * 2 + 2, 90) for k in range(160)]])
    out = tmp_path / "ds"
    cmd = [
        sys.executable,
        "-m",
        "melody_lc",
        "data",
        "build",
        "--midi-dir",
        str(src),
        "--out",
        str(out),
        "--workers",
        "2",
        "--shard-windows",
        "20",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = Path(str(out) + ".partial") / "progress.json"
    deadline = time.monotonic() + 60
    while not progress.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.fail("the build finished before it could be interrupted; make the input larger")
    assert proc.returncode == 130 and "Traceback" not in err and "run the same command again" in err
    assert not out.exists()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (out / "manifest.json").exists() and not Path(str(out) + ".partial").exists()


def test_os_errors_are_one_line(tmp_path):
    src = tmp_path / "midi"
    src.mkdir()
    write_midi(src / "a.mid", [scale_notes(18)])
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    res = run_cli("data", "build", "--midi-dir", str(src), "--out", str(blocker / "ds"), "--quiet")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1  # said before building
    assert "Traceback" not in res.stderr and "afile is a file, not a folder" in res.stderr
    res = run_cli("data", "build", "--midi-dir", str(src), "--out", str(src), "--quiet")
    assert res.returncode == 2 and "not a melody dataset" in res.stderr and (src / "a.mid").exists()


def test_bad_option_values_are_one_line_before_any_work(tmp_path, capsys):
    """Output places and numbers are checked when the command line is read: one line, exit 2,
    nothing loaded, generated or made (a run of minutes never fails only when it writes)."""
    from melody_lc.cli import main

    rules = str(Path(__file__).resolve().parents[2] / "rules" / "c_major_busy.rules")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cases = [
        (["generate", "--rules", rules, "--out", str(blocker)], "afile: is a file, not a folder"),
        (["generate", "--rules", rules, "--out", str(blocker / "sub")], "afile is a file, not a folder"),
        (["generate", "--rules", rules, "--out", ""], "empty name"),
        (["generate", "--rules", rules, "--temperature", "-1"], "a number >= 0, got '-1'"),
        (["generate", "--rules", rules, "--temperature", "nan"], "a number >= 0, got 'nan'"),
        (["generate", "--rules", rules, "--rounds", "0"], "a whole number >= 1, got '0'"),
        (["fit", rules, "--rounds", "-5"], "a whole number >= 1, got '-5'"),
        (["transform", "in.mid", "--rules", rules, "--out", str(tmp_path)], "is a folder; expected a file name"),
        (["sample", "--out", str(blocker)], "is a file, not a folder"),
        (["sample", "--temperature", "x"], "a number >= 0, got 'x'"),
        (["render", "in.mid", "--out", str(blocker)], "is a file, not a folder"),
        (["generate", "-n", "abc"], "invalid int value"),
    ]
    if Path("/proc").is_dir():  # a folder no one may write in, root included (Linux)
        cases.append((["generate", "--rules", rules, "--out", "/proc/melody-lc-test"], "cannot write in /proc"))
    for argv, words in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and words in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "--help" in err, (argv, err)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # nothing made

    from melody_lc.cli import checks

    assert checks.out_folder(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert checks.out_file(str(blocker)) == str(blocker)  # an existing file is replaced
    assert checks.temperature("0") == 0.0 and checks.positive_int("3") == 3
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # checking makes nothing either


def test_a_folder_one_may_not_look_into_is_one_line(monkeypatch):
    import argparse

    from melody_lc.cli import checks

    def refused(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "exists", refused)
    for check in (checks.out_folder, checks.out_file):
        with pytest.raises(argparse.ArgumentTypeError, match="^locked/x: Permission denied$"):
            check("locked/x")


def test_an_error_of_a_whole_rules_file_names_no_line(tmp_path):
    from melody_lc.rules import RulesError, load_rules

    with pytest.raises(RulesError) as e:
        load_rules(tmp_path / "missing.rules")
    assert str(e.value) == f"{tmp_path / 'missing.rules'}: no such rules file"  # not missing.rules:0:0
