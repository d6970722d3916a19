"""`melody-lc chain` on real JACK ports: several chains at once, each to its own port and channel."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mido
import numpy as np

from melody_lc.rules.kinds import MODES
from tests.chain.conftest import REPO, hanging
from tests.chain.test_plugins import _loop_file


def run_chain(path, *args, timeout=120):
    env = {**os.environ, "MELODY_LC_MIDI_API": "jack", "MELODY_LC_CACHE": str(path.parent / "cache")}
    return subprocess.run([sys.executable, "-m", "melody_lc", "chain", str(path), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)


def test_two_chains_play_at_once_each_to_its_own_port_and_channel(tmp_path, receiver):
    lead_rx, bass_rx = receiver("lead-rx"), receiver("bass-rx")
    loop = _loop_file(tmp_path / "loop.mid", bars=1)
    chain = tmp_path / "two.chain"
    chain.write_text(f"""# a generated lead over a bass loop
tempo: 300
chain lead: generator(rules={REPO / 'rules' / 'c_major_busy.rules'}, seed=2)
    -> humanize(timing=5ms, velocity=5) -> scale(C, major)
    -> out(port=lead-rx, channel=1)
chain bass: file({loop.name}) -> transpose(octaves=-2) -> out(port=bass-rx, channel=2, record=bass.mid)
""")
    assert run_chain(chain, "--check").returncode == 0
    t0 = time.monotonic()
    res = run_chain(chain, "--seconds", "5")
    assert res.returncode == 0, res.stderr
    lead = [(t, m) for t, m in lead_rx.stop() if t > t0]
    bass = [(t, m) for t, m in bass_rx.stop() if t > t0]
    lead_on = [m for _, m in lead if m.type == "note_on" and m.velocity]
    bass_on = [(t, m) for t, m in bass if m.type == "note_on" and m.velocity]
    assert len(lead_on) >= 20 and {m.channel for _, m in lead if hasattr(m, "channel")} == {0}
    assert all(m.note % 12 in MODES["major"] for m in lead_on)
    assert len(bass_on) >= 40 and {m.channel for _, m in bass if hasattr(m, "channel")} == {1}
    assert {m.note + 24 for _, m in bass_on} == {60, 62, 64, 65, 67, 69, 71, 72}
    # the loop's eighths at 300 bpm are 0.1 s apart: on time within a JACK period and some jitter
    gaps = np.diff([t for t, _ in bass_on])
    assert np.median(gaps) == __import__("pytest").approx(0.1, abs=0.002) and np.abs(gaps - 0.1).max() < 0.015
    assert not hanging([m for _, m in lead]) and not hanging([m for _, m in bass])
    rec = [m for m in mido.MidiFile(tmp_path / "bass.mid").tracks[0] if not m.is_meta]
    assert [m.note for m in rec if m.type == "note_on" and m.velocity] == [m.note for _, m in bass_on]


def test_chain_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.chain"
    bad.write_text("chain: file(nothing.mid) -> out()\n")
    res = run_chain(bad)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith(f"melody-lc: error: {bad}:1:8: cannot read {tmp_path / 'nothing.mid'} as a MIDI file: "
                                 "No such file or directory")
    assert run_chain(bad, "--check").stderr == res.stderr
    missing = run_chain(tmp_path / "missing.chain")
    assert missing.returncode == 2 and "missing.chain:1:1: cannot read the chain file" in missing.stderr
    rules = tmp_path / "broken.rules"
    rules.write_text("key: H major\n")
    bad.write_text(f"chain: generator(rules={rules.name}) -> out()\n")
    res = run_chain(bad)
    assert res.returncode == 2 and res.stderr.strip().startswith(f"melody-lc: error: {rules}:1:")
