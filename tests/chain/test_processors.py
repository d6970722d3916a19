"""Each built-in transform on the event streams the live engine sends for melodies the shipped
model made, called the way the host calls it."""

from __future__ import annotations

import threading
import time

import mido
import numpy as np
import pytest

from melody_lc.chain.api import Context, Event, Param, ParamError, parse_duration
from melody_lc.chain.builtin import (
    ChannelMap,
    Echo,
    Humanize,
    NoteLength,
    Quantize,
    ScaleSnap,
    Transpose,
    VelocityCurve,
)
from melody_lc.chain.constrain import Constrain
from melody_lc.melody.pitches import MODES
from tests.chain.conftest import BPM, STEP_S, drive, hanging, notes, stream


def make(cls, **given):
    """A processor with its declared defaults, and ``given`` written as in a chain file."""
    values = {p.name: p.default_value() for p in cls.params}
    values.update({k: cls.declared()[k].parse(str(v)) for k, v in given.items()})
    return cls(**values)


def test_durations_and_params_parse_as_written():
    assert parse_duration("8ms").seconds(120) == pytest.approx(0.008)
    assert parse_duration("1/16").seconds(120) == pytest.approx(0.125)
    assert parse_duration("1/8.").seconds(120) == pytest.approx(0.375)
    assert parse_duration("1/8t").seconds(120) == pytest.approx(1 / 6)
    assert parse_duration("2bars").seconds(60) == pytest.approx(8.0)
    p = Param("n", "int", 1, min=1, max=16)
    assert p.parse("16") == 16
    with pytest.raises(ParamError, match="n: expected a whole number from 1 to 16, found 17"):
        p.parse("17")
    with pytest.raises(ParamError, match="expected a key"):
        Param("k", "key", 0).parse("H")
    assert Param("k", "key", 0).parse("Bb") == 10 and Param("x", "note", 60).parse("C4") == 60


def test_scale_snap_puts_every_note_in_the_scale_and_ends_each_note(phrases):
    events = stream(phrases[:2])
    for key, scale in ((2, "dorian"), (9, "harmonic_minor"), (0, "minor_pentatonic")):
        out = drive(
            make(ScaleSnap, key=["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A"][key], scale=scale), events
        )
        allowed = {(key + d) % 12 for d in MODES[scale.replace("_", " ")]}
        played = notes(out)
        assert played and all(p % 12 in allowed for _, p, _, _, _ in played)
        assert len(played) == len(notes(events))  # one note out for each note in, same times
        assert [n[0] for n in played] == pytest.approx([n[0] for n in notes(events)])
        assert max(abs(a[1] - b[1]) for a, b in zip(played, notes(events))) <= 2
        assert not hanging(out)


def test_a_pitch_change_while_a_note_sounds_ends_the_note_it_started():
    snap = make(ScaleSnap, key="C")
    on = Event(0.0, mido.Message("note_on", note=61, velocity=90))
    off = Event(1.0, mido.Message("note_off", note=61))
    ctx = Context(0.0, BPM, 0.0)
    first = snap.process([on], ctx)[0].msg.note  # C#: down to C on a tie
    snap.values["key"] = 1  # C# major now: C# is in the scale
    ended = snap.process([off], ctx)[0].msg
    assert first == 60 and ended.type == "note_off" and ended.note == 60


def test_transpose_moves_everything_and_keeps_lengths(phrases):
    events = stream(phrases[:1])
    out = drive(make(Transpose, semitones=-3, octaves=1), events)
    assert [(s, p - 9, e) for s, p, e, _, _ in notes(out)] == [(s, p, e) for s, p, e, _, _ in notes(events)]
    assert not hanging(out)


def test_quantize_pulls_starts_to_the_grid_and_keeps_lengths(phrases):
    rng = np.random.default_rng(1)
    played = stream(phrases[:1])
    # a player a little off the beat, always late (a live player can only be moved later)
    late = {}
    events = []
    for e in played:
        key = (e.msg.channel, e.msg.note)
        if e.is_note_on:
            late[key] = rng.uniform(0.005, 0.3) * STEP_S
        events.append(e.at(e.time + late[key]))
    events.sort(key=lambda e: e.time)
    for strength, want in ((100, 0.0), (50, 0.5)):
        out = drive(make(Quantize, grid="1/16", strength=strength), events)
        got, sent = notes(out), notes(events)
        grid = [round(n[0] / STEP_S) * STEP_S for n in sent]
        for g, n, o in zip(grid, sent, got):
            moved_to = max(g + (n[0] - g) * want, n[0])  # into the past it cannot go
            assert o[0] == pytest.approx(moved_to, abs=1e-9)
            assert o[2] - o[0] == pytest.approx(n[2] - n[0], abs=1e-9)  # the length is kept
        assert not hanging(out)
    # with a grid line still ahead (the host's lookahead), a note moves earlier onto it
    q = make(Quantize, grid="1/8")
    ev = Event(0.26, mido.Message("note_on", note=60, velocity=90))
    assert q.process([ev], Context(0.20, BPM, 0.0))[0].time == pytest.approx(0.25)


def test_humanize_is_seeded_bounded_and_declares_its_delay(phrases):
    events = stream(phrases[:1])
    a = drive(make(Humanize, timing="8ms", velocity=10, seed=4), events)
    b = drive(make(Humanize, timing="8ms", velocity=10, seed=4), events)
    c = drive(make(Humanize, timing="8ms", velocity=10, seed=5), events)
    assert [(e.time, e.msg) for e in a] == [(e.time, e.msg) for e in b] != [(e.time, e.msg) for e in c]
    na, n0 = notes(a), notes(events)
    shifts = np.array([x[0] - y[0] for x, y in zip(na, n0)])
    dv = np.array([x[3] - y[3] for x, y in zip(na, n0)])
    assert len(na) == len(n0) and np.abs(shifts).max() <= 0.008 + 1e-9 and shifts.std() > 0.002
    shorter = np.array([(y[2] - y[0]) - (x[2] - x[0]) for x, y in zip(na, n0)])
    assert shorter.min() >= -1e-9 and shorter.max() <= 0.016 + 1e-9  # each ends 8 ms early
    assert np.abs(dv).max() <= 10 and dv.std() > 2
    assert make(Humanize, timing="8ms").lookahead(BPM) == pytest.approx(0.008)
    assert not hanging(a)


def test_velocity_curve_and_fixed(phrases):
    events = [
        e.with_msg(velocity=v) if e.is_note_on else e
        for e, v in zip(stream(phrases[:1]), np.linspace(1, 127, 10_000).astype(int))
    ]
    out = drive(make(VelocityCurve, curve=2, min=20, max=100), events)
    for a, b in zip(notes(out), notes(events)):
        assert a[3] == round(20 + 80 * (b[3] / 127) ** 2)
    assert {n[3] for n in notes(drive(make(VelocityCurve, fixed=64), events))} == {64}


def test_note_length_fixed_minimum_and_maximum(phrases):
    events = stream(phrases[:1])
    fixed = notes(drive(make(NoteLength, length="1/32"), events))
    assert fixed and all(e - s == pytest.approx(STEP_S / 2) for s, _, e, _, _ in fixed)
    longest = notes(drive(make(NoteLength, max="1/16"), events))
    assert all(e - s <= STEP_S + 0.05 + 1e-9 for s, _, e, _, _ in longest)  # released within the tick horizon
    assert all(
        e - s == pytest.approx(min(STEP_S, e0 - s0))
        for (s, _, e, _, _), (s0, _, e0, _, _) in zip(longest, notes(events))
    )
    shortest = notes(drive(make(NoteLength, min="1/4"), events))
    for (s, p, e, _, _), (s0, _, e0, _, _), nxt in zip(shortest, notes(events), notes(events)[1:] + [None]):
        assert e - s >= min(4 * STEP_S, e0 - s0) - 1e-9 or (nxt and nxt[1] == p)
    for proc in (make(NoteLength, length="1/32"), make(NoteLength, max="1/16"), make(NoteLength, min="1/4")):
        assert not hanging(drive(proc, events))


def test_channel_map_moves_channels_and_sets_the_program_first(phrases):
    events = stream(phrases[:1], channel=0) + stream(phrases[1:2], channel=4)
    events.sort(key=lambda e: e.time)
    out = drive(make(ChannelMap, to=3, program=33), events)
    assert out[0].msg.type == "program_change" and out[0].msg.program == 32 and out[0].msg.channel == 2
    assert {e.msg.channel for e in out} == {2}
    only = drive(make(ChannelMap, to=3, **{"from": 5}), events)
    assert {e.msg.channel for e in only if e.is_note} == {0, 2}
    assert not hanging(out)


def test_echo_repeats_softer_and_balanced(phrases):
    events = stream(phrases[:1])
    out = drive(make(Echo, delay="1/8", repeats=2, feedback=0.5), events)
    ons = [e for e in out if e.is_note_on]
    src = [e for e in events if e.is_note_on]
    assert len(ons) == 3 * len(src)
    first = src[0]

    def velocities_at(delay):  # the melody itself may strike the same pitch there too
        return [e.msg.velocity for e in ons if e.msg.note == first.msg.note and abs(e.time - first.time - delay) < 1e-6]

    assert first.msg.velocity == 90 and 45 in velocities_at(0.25) and 22 in velocities_at(0.5)
    assert not hanging(out)


def test_constrain_plays_the_phrase_moved_toward_the_rules_one_phrase_later(shipped_model):
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.melody import Melody
    from melody_lc.rules import load_rules
    from tests.chain.conftest import REPO

    rules = load_rules(REPO / "rules" / "c_major_busy.rules")
    fitted = cached_fit(rules, shipped_model, [], search=(shipped_fits_dir(),))
    assert fitted is not None
    bpm = 960.0  # a 16-bar phrase in 4 s
    step = 60 / bpm / 4
    chromatic = Melody.from_notes([(60 + (i * 5) % 13, 2 * i, 2 * i + 2) for i in range(128)]).tokens
    events = stream(chromatic, bpm=bpm)
    proc = make(Constrain, rules=str(REPO / "rules" / "c_major_busy.rules"), velocity=70)
    proc.model, proc.rules, proc.fitted = shipped_model, rules, fitted
    out = []
    horizon = 0.05
    for e in events:  # the phrase played in, then ticks until the answer has played
        out += proc.process([e], Context(e.time, bpm, 0.0, horizon=horizon))
    t = events[-1].time
    deadline = time.monotonic() + 60
    while not proc.results and not out and time.monotonic() < deadline:
        out += proc.process([], Context(t, bpm, 0.0, horizon=horizon))  # the phrase ends at 4 s: search starts
        t = max(t, 256 * step - 0.01)
        time.sleep(0.05)
    assert proc.results or out, "the search never finished"
    t = 256 * step  # phrase 1 begins: its notes are released a horizon at a time
    while t < 512 * step + horizon:
        out += proc.process([], Context(t, bpm, 0.0, horizon=horizon))
        t += horizon / 2
    played = notes(sorted(out, key=lambda e: (e.time, e.is_note_on)))
    assert len(played) > 10 and all(256 * step - 1e-9 <= s < 512 * step for s, *_ in played)
    in_key = np.mean([p % 12 in MODES["major"] for _, p, _, _, _ in played])
    before = np.mean([t_ % 12 in MODES["major"] for t_ in chromatic if t_ < 128])
    assert in_key > before + 0.2 and {v for *_, v, _ in played} == {70}
    assert not hanging(out)


def test_constrain_close_waits_for_the_search_under_way_and_starts_no_other(shipped_model):
    """A search is never cut off at exit (torch aborts the process when a thread dies inside it)."""
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.rules import load_rules
    from tests.chain.conftest import REPO

    rules = load_rules(REPO / "rules" / "c_major_busy.rules")
    proc = make(Constrain, rules=str(REPO / "rules" / "c_major_busy.rules"))
    proc.model, proc.rules = shipped_model, rules
    proc.fitted = cached_fit(rules, shipped_model, [], search=(shipped_fits_dir(),))
    bpm = 960.0
    step = 60 / bpm / 4
    phrase = stream(np.tile(np.array([60, 128, 62, 128], dtype=np.int64), 64), bpm=bpm)

    def play_phrase(k: int) -> None:
        for e in phrase:
            e = Event(e.time + k * 256 * step, e.msg)
            proc.process([e], Context(e.time, bpm, 0.0))
        proc.process([], Context((k + 1) * 256 * step, bpm, 0.0))  # the phrase is over: its search starts

    play_phrase(0)
    worker = proc.worker
    assert worker.is_alive() and not worker.daemon and proc.waiting is not None  # warming up: phrase 0 waits
    proc.close()
    assert not worker.is_alive() and proc.results == []  # the warm-up ran to its end; no search started after
    play_phrase(2)
    assert proc.worker is None and proc.waiting is None and proc.results == []  # none after close


def test_constrain_searches_one_phrase_at_a_time_and_the_newest_wins(shipped_model, caplog):
    """Searches never compete for the CPU: a phrase still waiting when the next one ends is dropped
    (its answer could not be heard in time), and the drop is said."""
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.rules import load_rules
    from tests.chain.conftest import REPO

    rules = load_rules(REPO / "rules" / "c_major_busy.rules")
    fitted = cached_fit(rules, shipped_model, [], search=(shipped_fits_dir(),))
    proc = make(Constrain, rules=str(REPO / "rules" / "c_major_busy.rules"))
    proc.model, proc.rules, proc.fitted = shipped_model, rules, fitted
    bpm = 960.0
    step = 60 / bpm / 4
    phrase = stream(np.tile(np.array([60, 128, 62, 128], dtype=np.int64), 64), bpm=bpm)
    for k in range(3):  # three phrases within microseconds: the search thread is still warming up
        for e in phrase:
            e = Event(e.time + k * 256 * step, e.msg)
            proc.process([e], Context(e.time, bpm, 0.0))
    proc.process([], Context(3 * 256 * step, bpm, 0.0))
    deadline = time.monotonic() + 60
    while (not proc.results or proc.worker is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    # idle, the search thread has ended: nothing keeps the process from exiting
    assert proc.worker is None and not any(t.name == "melody-lc-constrain" for t in threading.enumerate())
    proc.close()
    assert [k for k, *_ in proc.results] == [3]  # phrase 2's answer, to play in phrase 3
    dropped = [r.getMessage() for r in caplog.records if "stays unanswered" in r.getMessage()]
    assert len(dropped) == 2 and "phrase 0" in dropped[0] and "phrase 1" in dropped[1]


def _ev(t, kind, note=60):
    return Event(t, mido.Message(kind, note=note, velocity=90 if kind == "note_on" else 0))


def test_note_length_pairs_short_and_long_notes_of_one_pitch():
    events = [_ev(0.0, "note_on"), _ev(0.01, "note_off"), _ev(0.5, "note_on"), _ev(1.0, "note_off")]
    fixed = notes(drive(make(NoteLength, length="100ms"), events))
    assert [(round(s, 3), round(e, 3)) for s, _, e, _, _ in fixed] == [(0.0, 0.1), (0.5, 0.6)]
    held = notes(drive(make(NoteLength, min="100ms"), events))
    assert [(round(s, 3), round(e, 3)) for s, _, e, _, _ in held] == [(0.0, 0.1), (0.5, 1.0)]
    for proc in (make(NoteLength, length="100ms"), make(NoteLength, min="100ms"), make(NoteLength, max="100ms")):
        out = drive(proc, events)
        assert sum(e.is_note_on for e in out) == sum(e.is_note_off for e in out) == 2 and not hanging(out)
    # a note-off it never saw start (after a reset) is passed on
    assert make(NoteLength, max="100ms").process([_ev(0.0, "note_off")], Context(0.0, BPM, 0.0)) != []


def test_echoes_keep_their_delay_when_the_tempo_rises():
    echo = make(Echo, delay="1/8", repeats=3)
    out = echo.process([_ev(0.0, "note_on")], Context(0.0, 60.0, 0.0))  # echoes every 0.5 s
    out += echo.process([_ev(0.1, "note_off")], Context(0.1, 240.0, 0.0))  # four times faster now
    ordered = sorted(out, key=lambda e: (e.time, e.is_note_on))
    assert not hanging(ordered) and len(notes(ordered)) == 4
    assert all(round(e - s, 6) == 0.1 for s, _, e, _, _ in notes(ordered))
