"""Phrases as .mid files: what the live engine played, written back to back, atomically.

    path = write_phrases([tokens_a, tokens_b], "captures/take-001.mid", bpm=100, channel=0)

The events are the ones the live engine sends (:meth:`Phrase.from_tokens`), so a capture holds
exactly the notes that were heard, on the sixteenth grid, at the tempo they were played at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import mido

from melody_lc.fileio import atomic_path
from melody_lc.melody.encoding import STEPS
from melody_lc.midi.schedule import Phrase

TICKS_PER_QUARTER = 480
TICKS_PER_STEP = TICKS_PER_QUARTER // 4


def phrases_to_midi(
    phrases, bpm: float = 120.0, channel: int = 0, velocity: int = 90, program: int | None = None
) -> mido.MidiFile:
    """A type-0 file of the phrases (each (256,) tokens) one after another."""
    timed: list[tuple[int, mido.Message]] = []
    if program is not None:
        timed.append((0, mido.Message("program_change", channel=channel, program=program)))
    for k, tokens in enumerate(phrases):
        events = Phrase.from_tokens(tokens, channel, velocity).events
        for step in sorted(events):
            timed += [((k * STEPS + step) * TICKS_PER_STEP, m) for m in events[step]]
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        ]
    )
    now = 0
    for tick, msg in timed:  # already in time order, note-offs before note-ons at a step
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=len(phrases) * STEPS * TICKS_PER_STEP - now))
    return mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_QUARTER, tracks=[track])


def write_phrases(phrases, path: str | os.PathLike, **kw) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        phrases_to_midi(phrases, **kw).save(tmp)
    return path


def next_take(folder: str | os.PathLike, stem: str = "take") -> Path:
    """``folder/take-NNN.mid`` with NNN one more than the highest there (001 for the first)."""
    folder = Path(folder)
    pattern = re.compile(rf"{re.escape(stem)}-(\d+)(-.*)?\.mid$")
    taken = [int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else []) if (m := pattern.match(p.name))]
    return folder / f"{stem}-{max(taken, default=0) + 1:03d}.mid"
