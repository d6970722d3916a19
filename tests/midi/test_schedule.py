"""The scheduler's logic on an injected clock: no ports, no waiting."""

from __future__ import annotations

import threading

import mido
import numpy as np
import pytest

from melody_lc.melody import Melody
from melody_lc.midi.schedule import (
    PULSES_PER_PHRASE,
    PULSES_PER_STEP,
    FakeClock,
    Follower,
    Phrase,
    Tempo,
    Transport,
    run_clock,
)
from tests.conftest import scale_notes


def _phrase(seed: int) -> Phrase:
    rng = np.random.default_rng(seed)
    notes, s = [], int(rng.integers(0, 3))
    while s < 250:
        d = int(rng.integers(1, 6))
        notes.append((int(rng.integers(55, 80)), s, min(s + d, 256)))
        s += d + int(rng.integers(0, 3))
    notes[-1] = (notes[-1][0], notes[-1][1], 256)  # the last note lasts to the phrase's end
    return Phrase.from_tokens(Melody.from_notes(notes).tokens)


class Recorder:
    def __init__(self, clock):
        self.clock, self.got = clock, []

    def send(self, msg):
        self.got.append((self.clock.now(), msg))

    def notes(self):
        return [(t, m) for t, m in self.got if m.type in ("note_on", "note_off")]


def test_phrase_events_match_the_melody():
    m = Melody.from_notes([(n[0], n[1], n[2]) for n in scale_notes(16)])
    p = Phrase.from_tokens(m.tokens, channel=3, velocity=77)
    ons = [(s, msg.note) for s, msgs in p.events.items() for msg in msgs if msg.type == "note_on"]
    offs = [(s, msg.note) for s, msgs in p.events.items() for msg in msgs if msg.type == "note_off"]
    assert sorted(ons) == [(s, pitch) for pitch, s, _ in m.notes()]
    assert sorted(offs) == sorted((e, pitch) for pitch, _, e in m.notes())
    assert all(msg.channel == 3 for msgs in p.events.values() for msg in msgs)
    for msgs in p.events.values():  # at a step where one note ends and the next starts, the off comes first
        kinds = [msg.type for msg in msgs]
        assert kinds == sorted(kinds, key=lambda k: k != "note_off")


def test_internal_clock_puts_every_note_on_the_grid_and_ends_every_note():
    clock = FakeClock(10.0)
    rec = Recorder(clock)
    phrases = [_phrase(1), _phrase(2), _phrase(3)]
    tr = Transport(rec.send, lambda k: phrases[k])
    tempo = Tempo(100.0, 10.5)
    end = run_clock(tr, tempo, threading.Event(), clock, until_pulse=3 * PULSES_PER_PHRASE)
    assert end == 3 * PULSES_PER_PHRASE
    step_s = 60 / 100 / 4
    expected = []
    for k, p in enumerate(phrases):
        for s, msgs in sorted(p.events.items()):
            expected += [(10.5 + (k * 256 + s) * step_s, m.type, m.note) for m in msgs]
    got = [(t, m.type, m.note) for t, m in rec.notes()]
    assert [g[1:] for g in got] == [e[1:] for e in expected]
    assert np.allclose([g[0] for g in got], [e[0] for e in expected], atol=1e-9)
    sounding = set()
    for _, m in rec.notes():
        (sounding.add if m.type == "note_on" else sounding.discard)(m.note)
    assert not sounding and not tr.sounding


def test_send_clock_is_24_per_quarter_between_start_and_stop():
    clock = FakeClock()
    rec = Recorder(clock)
    tr = Transport(rec.send, lambda k: _phrase(k))
    run_clock(tr, Tempo(120.0, 1.0), threading.Event(), clock, send_clock=True, until_pulse=PULSES_PER_PHRASE)
    kinds = [m.type for _, m in rec.got]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    clocks = [t for t, m in rec.got if m.type == "clock"]
    assert len(clocks) == PULSES_PER_PHRASE
    assert np.allclose(np.diff(clocks), 0.5 / 24)


def test_tempo_change_re_anchors_without_a_jump():
    tempo = Tempo(120.0, 0.0)
    before = tempo.time_of(96)
    tempo.change(60.0, 96)
    assert tempo.time_of(96) == pytest.approx(before)
    assert tempo.time_of(120) - tempo.time_of(96) == pytest.approx(1.0)  # a quarter at 60 bpm


def test_stop_mid_phrase_then_panic_ends_everything():
    clock = FakeClock()
    rec = Recorder(clock)
    stop = threading.Event()
    tr = Transport(rec.send, lambda k: Phrase.from_tokens(Melody.from_notes([(60, 0, 256)]).tokens), channel=2)

    def on_step(k, s):
        if s == 10:
            stop.set()

    tr.on_step = on_step
    run_clock(tr, Tempo(120.0, 0.0), stop, clock)
    tr.panic()
    msgs = [m for _, m in rec.got]
    assert [m.type for m in msgs[:2]] == ["note_on", "note_off"] and msgs[1].note == 60
    assert [(m.control, m.channel) for m in msgs[2:]] == [(123, 2), (120, 2)]


def test_a_phrase_not_ready_is_silence_not_a_stall():
    clock = FakeClock()
    rec = Recorder(clock)
    tr = Transport(rec.send, lambda k: None if k == 1 else _phrase(k))
    run_clock(tr, Tempo(240.0, 0.0), threading.Event(), clock, until_pulse=3 * PULSES_PER_PHRASE)
    assert tr.late_phrases == 1
    steps = [round(t / (60 / 240 / 4)) for t, m in rec.notes() if m.type == "note_on"]
    assert steps and not any(256 <= s < 512 for s in steps) and any(s >= 512 for s in steps)


def test_follow_plays_to_the_daws_clock_start_stop_continue_and_song_position():
    clock = FakeClock()
    rec = Recorder(clock)
    phrases = {}

    def supply(k):
        phrases.setdefault(k, _phrase(10 + k))
        return phrases[k]

    tr = Transport(rec.send, supply)
    f = Follower(tr, clock)
    for _ in range(10):  # clock before start: tempo only
        clock.t += 0.02
        f(mido.Message("clock"))
    assert not rec.got and f.bpm == pytest.approx(60 / (0.02 * 24))
    f(mido.Message("start"))
    for _ in range(64 * PULSES_PER_STEP):
        clock.t += 0.02
        f(mido.Message("clock"))
    want = [(s, m.note) for s, ms in sorted(phrases[0].events.items()) if s < 64 for m in ms if m.type == "note_on"]
    got = [(round(t / 0.02) - 11, m.note) for t, m in rec.notes() if m.type == "note_on"]
    assert [(s * PULSES_PER_STEP, n) for s, n in want] == got
    f(mido.Message("stop"))
    assert not tr.sounding
    n = len(rec.got)
    clock.t += 0.02
    f(mido.Message("clock"))
    assert len(rec.got) == n  # stopped: clock pulses play nothing
    f(mido.Message("songpos", pos=256 + 32))  # phrase 1, bar 3
    f(mido.Message("continue"))
    for _ in range(PULSES_PER_STEP * 16):
        f(mido.Message("clock"))
    ons = [m.note for _, m in rec.got[n:] if m.type == "note_on"]
    want = [m.note for s, ms in sorted(phrases[1].events.items()) if 32 <= s < 48 for m in ms if m.type == "note_on"]
    assert ons == want and ons
