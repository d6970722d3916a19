"""`melody-lc stream` on real JACK MIDI ports, heard by a receiver in another process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import mido
import numpy as np
import pytest

from melody_lc.melody import Melody
from melody_lc.midi.schedule import PULSES_PER_PHRASE, PULSES_PER_STEP, Phrase
from tests.midi.conftest import REPO

BPM = 600.0  # fast, so a 16-bar phrase takes 6.4 s
STEP_S = 60 / BPM / 4
GRID_TOLERANCE_S = 0.012  # most notes: a JACK period (5.3 ms here) and scheduling jitter fit well inside
GRID_BPM = 400.0  # the grid test: a step of 37.5 ms


@pytest.fixture(scope="module")
def setup(tiny_run, tmp_path_factory):
    root, data, model = tiny_run
    d = tmp_path_factory.mktemp("live")
    rules = d / "busy.rules"
    rules.write_text("key: C major\ndensity: >= 1 notes per bar\n")
    return {
        "rules": rules,
        "common": ["--model", str(model), "--data", str(data), "--rounds", "1", "--quick", "--bpm", str(BPM)],
        "env": {"MELODY_LC_CACHE": str(d / "cache"), "MELODY_LC_MIDI_API": "jack"},
    }


def _stream(setup, *args, **kw):
    import os

    env = dict(os.environ, **setup["env"])
    cmd = [sys.executable, "-X", "faulthandler", "-m", "melody_lc", "stream", "--rules", str(setup["rules"])]
    return subprocess.Popen(  # -X faulthandler: a crash prints where every thread was
        [*cmd, *setup["common"], *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _phrases(status_path):
    rows = [json.loads(line) for line in status_path.read_text().splitlines()]
    return [r for r in rows if "phrase" in r]


def _expected(phrases):
    """(global step, type, note) of every note message the phrases should have sent, in order."""
    out = []
    for p in phrases:
        ev = Phrase.from_tokens(p["tokens"]).events
        for s in sorted(ev):
            out += [(p["phrase"] * 256 + s, m.type, m.note) for m in ev[s]]
    return sorted(out, key=lambda e: (e[0], e[1] != "note_off"))


def _notes(messages):
    return [(t, m) for t, m in messages if m.type in ("note_on", "note_off")]


def _assert_no_hanging_notes(messages):
    sounding = set()
    for _, m in _notes(messages):
        if m.type == "note_on" and m.velocity > 0:
            sounding.add((m.channel, m.note))
        else:
            sounding.discard((m.channel, m.note))
    assert not sounding, f"hanging notes: {sounding}"


def _assert_panic_at_end(messages, channel):
    tail = [(m.type, getattr(m, "control", None), m.channel) for _, m in messages[-2:]]
    assert tail == [("control_change", 123, channel), ("control_change", 120, channel)]


def test_stream_sends_exactly_the_generated_notes_on_the_grid(setup, receiver, tmp_path):
    rec = receiver("lc-test-grid")
    status, record = tmp_path / "status.jsonl", tmp_path / "sent.mid"
    proc = _stream(
        setup,
        "--port",
        "lc-test-grid",
        "--phrases",
        "2",
        "--channel",
        "5",
        "--status",
        str(status),
        "--record",
        str(record),
        "--quiet",
        "--bpm",
        str(GRID_BPM),
    )
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    msgs = rec.stop()
    phrases = _phrases(status)
    assert [p["phrase"] for p in phrases] == [0, 1] and all(p["margin_s"] > 0 for p in phrases)
    want = _expected(phrases)
    got = _notes(msgs)
    assert [(m.type, m.note) for _, m in got] == [(t, n) for _, t, n in want]
    assert all(m.channel == 4 for _, m in got)
    # on the grid: melody-lc sent every step within half a step of its deadline (what it controls),
    # and the arrival time minus grid time is the same for every note, up to jitter: most notes
    # within a JACK period or two, none a whole step off (on a shared 2-core machine the MIDI
    # system and the receiver can be descheduled for a few periods: one note in a hundred was
    # heard 20 ms late at a send error of 2 ms)
    step_s = 60 / GRID_BPM / 4
    summary = [json.loads(line) for line in status.read_text().splitlines()][-1]
    assert summary["steps"] >= 512 and summary["max_send_error_s"] < step_s / 2, summary
    resid = np.array([t - s * step_s for (t, _), (s, _, _) in zip(got, want)])
    off = np.abs(resid - np.median(resid))
    assert np.quantile(off, 0.9) < GRID_TOLERANCE_S and off.max() < step_s, off
    _assert_no_hanging_notes(msgs)
    _assert_panic_at_end(msgs, 4)
    # the recording holds what was sent
    played = Melody.from_midi_file(record)
    assert played.tokens.tolist() == Melody(phrases[0]["tokens"]).tokens.tolist()
    assert not list(tmp_path.glob("*.tmp*"))


def test_ctrl_c_ends_every_note_then_panics(setup, receiver, tmp_path):
    rec = receiver("lc-test-sigint")
    proc = _stream(setup, "--port", "lc-test-sigint", "--quiet")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if sum(m.type == "note_on" for _, m in rec.messages()) >= 8:
            break
    else:
        pytest.fail("no notes arrived: " + (proc.stderr.read() if proc.poll() is not None else "still running"))
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert proc.returncode == 130, proc.stderr.read()[-4000:]
    time.sleep(0.2)
    msgs = rec.stop()
    _assert_no_hanging_notes(msgs)
    _assert_panic_at_end(msgs, 0)


def test_clock_send_is_the_master(setup, receiver, tmp_path):
    rec = receiver("lc-test-clock")
    proc = _stream(setup, "--port", "lc-test-clock", "--phrases", "1", "--clock", "send", "--quiet")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    msgs = rec.stop()
    kinds = [m.type for _, m in msgs]
    assert kinds[0] == "start" and "stop" in kinds[-4:]
    clocks = np.array([t for t, m in msgs if m.type == "clock"])
    assert len(clocks) == PULSES_PER_PHRASE
    # 24 per quarter on average (they arrive a JACK period at a time, so single gaps say little)
    assert (clocks[-1] - clocks[0]) / (len(clocks) - 1) == pytest.approx(60 / BPM / 24, rel=0.02)
    # every note starts right after the clock pulse that begins its sixteenth
    seen = 0
    for _, m in msgs:
        seen += m.type == "clock"
        if m.type == "note_on":
            assert (seen - 1) % PULSES_PER_STEP == 0
    _assert_no_hanging_notes(msgs)


def _daw_clock(out, pulses: int, bpm: float, sent: list, stop_after: bool = True):
    """Play the DAW: start, then `pulses` clock pulses on an absolute schedule, then stop."""
    period = 60 / bpm / 24
    out.send(mido.Message("start"))
    t0 = time.monotonic()
    for p in range(pulses):
        while time.monotonic() < t0 + p * period:
            time.sleep(0.0005)
        sent.append(time.monotonic())
        out.send(mido.Message("clock"))
    if stop_after:
        out.send(mido.Message("stop"))


def test_clock_follow_plays_to_the_daws_clock_and_stops_with_it(setup, receiver, tmp_path):
    from melody_lc.midi.ports import open_output

    rec = receiver("lc-test-follow")
    # the DAW's port exists before the stream: JACK corrupts MIDI in flight when clients come and go
    out = open_output(None, virtual_name="lc-test-daw")
    status = tmp_path / "status.jsonl"
    proc = _stream(
        setup,
        "--port",
        "lc-test-follow",
        "--clock",
        "follow",
        "--clock-input",
        "lc-test-daw",
        "--phrases",
        "1",
        "--status",
        str(status),
        "--quiet",
    )
    try:
        while not (status.exists() and "waiting for the DAW" in status.read_text()):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        sent: list[float] = []
        _daw_clock(out, 64 * PULSES_PER_STEP, BPM, sent)  # 4 bars, then stop
        time.sleep(0.3)
        msgs = rec.messages()
        ons = [t for t, m in msgs if m.type == "note_on"]
        assert ons, "nothing played to the DAW's clock"
        step_times = np.array(sent[::PULSES_PER_STEP])
        # each note follows a sixteenth's clock pulse closely: the pulse comes in through JACK and the
        # note goes out through it (two periods), so most notes within the grid tolerance and every
        # one well before the next sixteenth's pulse (a note on the wrong sixteenth is a step late)
        lags = np.array([t - step_times[step_times <= t + 0.002].max() for t in ons])
        assert lags.min() >= -0.002 and np.quantile(lags, 0.9) < GRID_TOLERANCE_S, lags
        assert lags.max() < 60 / BPM / 4 * 0.8, lags
        _assert_no_hanging_notes(msgs)  # the DAW's stop ended every note
        n = len(_notes(msgs))
        out.send(mido.Message("clock"))
        time.sleep(0.2)
        assert len(_notes(rec.messages())) == n  # stopped: no more notes
        out.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 130, proc.stderr.read()[-4000:]


def test_call_and_response_answers_the_phrase_played_in(setup, receiver, tmp_path):
    from melody_lc.midi.ports import open_output

    rec = receiver("lc-test-call")
    out = open_output(None, virtual_name="lc-test-player")  # made before the stream (see the follow test)
    status = tmp_path / "status.jsonl"
    proc = _stream(
        setup,
        "--port",
        "lc-test-call",
        "--input",
        "lc-test-player",
        "--phrases",
        "4",
        "--status",
        str(status),
        "--quiet",
    )
    try:
        while not status.exists() or not _phrases(status):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)  # phrase 0 has started
        call = [60, 62, 64, 65, 67, 65, 64, 62]
        for pitch in call:  # eighth notes at 600 bpm
            out.send(mido.Message("note_on", note=pitch, velocity=100))
            time.sleep(2 * STEP_S)
            out.send(mido.Message("note_off", note=pitch))
        out.close()
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    msgs = rec.stop()
    phrases = _phrases(status)
    answers = [p for p in phrases if p["source"] == "response"]
    assert len(answers) == 1 and answers[0]["phrase"] in (1, 2, 3)  # one that misses its phrase plays later
    logs = [json.loads(line)["log"] for line in status.read_text().splitlines() if "log" in json.loads(line)]
    assert any("captured 8 notes" in s for s in logs)
    want = _expected(phrases)
    assert [(m.type, m.note) for _, m in _notes(msgs)] == [(t, n) for _, t, n in want]
    _assert_no_hanging_notes(msgs)


def test_ports_lists_inputs_and_outputs(receiver):
    from tests.conftest import run_cli

    receiver("lc-test-list")
    res = run_cli("ports", "--json", env_extra={"MELODY_LC_MIDI_API": "jack"})
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert listed["api"] == "jack" and "lc-test-list:lc-test-list" in listed["outputs"]
    res = run_cli("ports", env_extra={"MELODY_LC_MIDI_API": "jack"})
    assert "outputs (melody-lc can send to):" in res.stdout and "lc-test-list" in res.stdout
    res = run_cli("ports", env_extra={"MELODY_LC_MIDI_API": "beos"})
    assert res.returncode == 2 and "expected one of alsa, jack, coremidi, windows" in res.stderr


def test_port_errors_are_one_line(setup, jack, tmp_path):
    proc = _stream(setup, "--port", "no-such-port-anywhere", "--phrases", "1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "no MIDI output port named 'no-such-port-anywhere'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_vanished_port_stops_the_stream_cleanly(setup, receiver, tmp_path):
    rec = receiver("lc-test-vanish")
    proc = _stream(setup, "--port", "lc-test-vanish", "--bpm", "120")  # port checks need half a step of quiet
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(m.type == "note_on" for _, m in rec.messages()):
        time.sleep(0.2)
    rec.proc.kill()  # the DAW crashes
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "has gone" in err and "Traceback" not in err


def test_stream_plays_a_plan_section_by_section(setup, receiver, tmp_path):
    """A rules file of phrase sections: each phrase plays its section's rules (each section fitted),
    a morph's phrase says where it stands, and the notes heard are the notes of the plan's phrases."""
    plan = tmp_path / "plan.rules"
    plan.write_text(
        "key: C major\nphrase 1:\ndensity: >= 1 notes per bar\nphrase 2: morph\nphrase 3:\nrange: C4 .. C6\n"
    )
    rec = receiver("lc-test-plan")
    status = tmp_path / "status.jsonl"
    proc = _stream(setup, "--rules", str(plan), "--port", "lc-test-plan", "--phrases", "4", "--status", str(status))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    msgs = rec.stop()
    phrases = _phrases(status)
    assert [p["section"] for p in phrases] == [
        "phrase 1 of 3",
        "phrase 2 of 3: morph 1/1 from phrase 1 to phrase 3",
        "phrase 3 of 3",
        "phrase 1 of 3",
    ]
    assert "phrase 1: phrase 2 of 3: morph 1/1 from phrase 1 to phrase 3" in err  # said as it plays
    assert [len(p["satisfied"]) for p in phrases] == [2, 1, 2, 2]  # each held to its own rules
    assert phrases[1]["t"] == 0.5 and {"source_met", "target_met"} <= set(phrases[1])
    got = [(m.type, m.note) for _, m in _notes(msgs) if not (m.type == "note_on" and m.velocity == 0)]
    assert [(t, n) for _, t, n in _expected(phrases)] == got
