"""Helpers for the chain tests: real event streams (phrases the shipped model makes, as the live
engine sends them), a driver that calls a processor the way the host does, and note bookkeeping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from melody_lc.chain.api import Context, Event
from melody_lc.midi.schedule import Phrase
from tests.midi.conftest import jack, receiver  # noqa: F401 - fixtures used here too

REPO = Path(__file__).resolve().parents[2]
BPM = 120.0
STEP_S = 60 / BPM / 4


@pytest.fixture(scope="session")
def shipped_model():
    from melody_lc.melody.train import load_model

    model, _ = load_model(REPO / "models" / "melody-16bar-folk")
    return model


@pytest.fixture(scope="session")
def phrases(shipped_model):
    """Four 16-bar melodies sampled from the shipped model (seeded)."""
    import torch

    return shipped_model.sample(4, temperature=0.5, generator=torch.Generator().manual_seed(3)).numpy()


def stream(tokens, bpm: float = BPM, channel: int = 0, t0: float = 0.0) -> list[Event]:
    """The events the live engine sends for ``tokens`` (one or more phrases), at their grid times."""
    step_s = 60 / bpm / 4
    out = []
    for k, t in enumerate(np.atleast_2d(tokens)):
        events = Phrase.from_tokens(t, channel).events
        for s in sorted(events):
            out += [Event(t0 + (k * 256 + s) * step_s, m) for m in events[s]]
    return out


def drive(proc, events: list[Event], bpm: float = BPM, tail: float = 2.0, tick: float = 0.025) -> list[Event]:
    """Call ``proc`` as the host does: each group of simultaneous events at its time, and a tick
    with no events every ``tick`` seconds; returns what it emitted, sorted by time."""
    horizon = 2 * tick
    groups: dict[float, list[Event]] = {}
    for e in events:
        groups.setdefault(round(e.time, 9), []).append(e)
    times = sorted(groups)
    end = (times[-1] if times else 0.0) + tail
    ticks = list(np.arange(0.0, end, tick))
    calls = sorted([(t, 0) for t in times] + [(float(t), 1) for t in ticks])
    out = []
    for t, is_tick in calls:
        ctx = Context(now=t, bpm=bpm, origin=0.0, horizon=horizon)
        got = proc.process([] if is_tick else list(groups[round(t, 9)]), ctx)
        assert all(isinstance(e, Event) for e in got)
        assert all(e.time >= t - 1e-9 for e in got), "an event was returned for the past"
        out += got
    return sorted(out, key=lambda e: (e.time, e.msg.type == "note_on"))


def hanging(events) -> dict:
    """(channel, note) -> how many note-ons were not ended, after playing ``events`` in order
    (messages or Events), as a synthesizer that ends every voice of a note on its note-off sees it."""
    sounding: dict = {}
    for e in events:
        m = getattr(e, "msg", e)
        if m.type == "note_on" and m.velocity > 0:
            sounding[(m.channel, m.note)] = sounding.get((m.channel, m.note), 0) + 1
        elif m.type in ("note_on", "note_off"):
            sounding.pop((m.channel, m.note), None)
    return sounding


def notes(events) -> list[tuple[float, int, float, int, int]]:
    """(start, pitch, end, velocity, channel) of each note in ``events`` (Events in time order)."""
    open_, out = {}, []
    for e in events:
        m = e.msg
        key = (m.channel, m.note)
        if m.type == "note_on" and m.velocity > 0:
            open_[key] = (e.time, m.velocity)
        elif m.type in ("note_on", "note_off") and key in open_:
            t, v = open_.pop(key)
            out.append((t, m.note, e.time, v, m.channel))
    return sorted(out)
