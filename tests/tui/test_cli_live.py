"""``melody-lc live`` as a user runs it: in a real terminal (a pseudo-terminal here), on a real
JACK port; bad input as one line and exit code 2."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.tui.conftest import REPO


def test_bad_rules_and_options_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("key: C major\nrange: C4 .. Q6\n")
    res = run_cli("live", "--rules", str(bad))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and f"{bad}:2:" in res.stderr, res.stderr
    res = run_cli("live", "--rules", str(REPO / "rules" / "c_major_busy.rules"), "--channel", "17")
    assert res.returncode == 2 and "--channel must be 1-16" in res.stderr
    res = run_cli("live", "--rules", str(REPO / "rules" / "c_major_busy.rules"))  # stdout is a pipe here
    assert res.returncode == 2 and "needs a terminal" in res.stderr


def _read_until(fd: int, proc, condition, timeout: float) -> bytes:
    out = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
        if condition(out):
            break
    return out


@pytest.mark.parametrize("how", ["q", "SIGTERM"])
def test_in_a_terminal_it_plays_and_every_way_out_ends_with_panic(receiver, tmp_path, how):
    daw = receiver(f"daw-pty-{how.lower()}")
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "melody_lc",
            "live",
            "--rules",
            str(REPO / "rules" / "c_major_busy.rules"),
            "--port",
            daw.name,
            "--bpm",
            "600",
            "--captures",
            str(tmp_path / "caps"),
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        t0 = time.monotonic()
        while not any(m.type == "note_on" for _, m in daw.messages()):
            assert time.monotonic() - t0 < 60 and proc.poll() is None, "no note arrived"
            _read_until(master, proc, lambda b: False, 0.2)  # keep the terminal drained
        if how == "q":
            os.write(master, b"q")
        else:
            proc.send_signal(signal.SIGTERM)
        _read_until(master, proc, lambda b: False, 20)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert code == (0 if how == "q" else 130)
    time.sleep(0.2)
    got = daw.stop()
    sounding = set()
    for _, m in got:
        if m.type == "note_on" and m.velocity > 0:
            sounding.add(m.note)
        elif m.type in ("note_on", "note_off"):
            sounding.discard(m.note)
    assert not sounding
    assert [(m.type, m.control) for _, m in got[-2:]] == [("control_change", 123), ("control_change", 120)]


def test_live_with_a_chain_file_in_a_terminal(receiver, tmp_path):
    """`melody-lc live --chain`: the rules, their open tonic, tempo, channel and port come from the chain
    file; q ends with panic."""
    daw = receiver("daw-pty-chain")
    chain = tmp_path / "lead.chain"
    chain.write_text(
        f"tempo: 600\nchain lead: generator(rules={REPO / 'rules' / 'any_key_major.rules'}, tonic=D, "
        "channel=3)\n    -> transpose(12) -> out(port=daw-pty-chain)\n"
    )
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen(
        [sys.executable, "-m", "melody_lc", "live", "--chain", str(chain), "--captures", str(tmp_path / "caps")],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        t0 = time.monotonic()
        while sum(m.type == "note_on" for _, m in daw.messages()) < 24:  # enough notes to judge the key by
            assert time.monotonic() - t0 < 60 and proc.poll() is None, "no note arrived"
            _read_until(master, proc, lambda b: False, 0.2)
        os.write(master, b"q")
        _read_until(master, proc, lambda b: False, 20)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert code == 0
    time.sleep(0.2)
    got = daw.stop()
    ons = [m for _, m in got if m.type == "note_on" and m.velocity]
    d_major = {(2 + d) % 12 for d in (0, 2, 4, 5, 7, 9, 11)}  # the chain's tonic=D reached the keys' stream
    assert ons and {m.channel for m in ons} == {2} and np.mean([m.note % 12 in d_major for m in ons]) > 0.85
    sounding = set()
    for _, m in got:
        if m.type == "note_on" and m.velocity > 0:
            sounding.add(m.note)
        elif m.type in ("note_on", "note_off"):
            sounding.discard(m.note)
    assert not sounding and got[-1][1].type == "control_change"
