"""What extraction reads of a piece of music: its notes, meters and keys, with times in quarter notes.

Every source becomes a :class:`Piece`: MIDI files (read with symusic, see ``sources.py``), music21's
corpus (``sources.py``) and note_seq NoteSequences (:mod:`melody_lc.melody.noteseq`, the
``melody-lc[note-seq]`` extra). Quarter notes are the common clock: MIDI ticks divided by the file's
ticks per quarter, music21 offsets as they are, NoteSequence seconds along its tempo map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

PIECE_NOTE_DTYPE = np.dtype(
    [("pitch", np.int16), ("start", np.float64), ("end", np.float64), ("instrument", np.int32), ("is_drum", np.bool_)]
)
MAJOR, MINOR = "major", "minor"


class TimeSignature(NamedTuple):
    time: float  # quarter notes
    numerator: int
    denominator: int


class Key(NamedTuple):
    time: float  # quarter notes
    tonic: int  # pitch class
    mode: str  # MAJOR or MINOR


@dataclass
class Piece:
    """Notes (``PIECE_NOTE_DTYPE``: start and end in quarter notes; ``instrument`` numbers the
    source's parts, each made monophonic on its own), time signatures and key signatures."""

    notes: np.ndarray
    time_signatures: list[TimeSignature] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)

    def __post_init__(self):
        self.time_signatures = [TimeSignature(float(t), int(n), int(d)) for t, n, d in self.time_signatures]
        self.keys = [Key(float(t), int(k), m) for t, k, m in self.keys]

    @classmethod
    def from_notes(cls, pitch, start, end, instrument=0, is_drum=False, **kw) -> Piece:
        """A piece from note columns (array-likes of equal length, or scalars for the last two)."""
        pitch = np.asarray(pitch)
        notes = np.zeros(len(pitch), dtype=PIECE_NOTE_DTYPE)
        notes["pitch"], notes["start"], notes["end"] = pitch, start, end
        notes["instrument"], notes["is_drum"] = instrument, is_drum
        return cls(notes, **kw)


def as_piece(source) -> Piece:
    """``source`` as a Piece: a Piece itself, or a note_seq NoteSequence (needs the extra)."""
    if isinstance(source, Piece):
        return source
    from melody_lc.melody.noteseq import piece_from_note_sequence

    return piece_from_note_sequence(source)


def key_from_sharps(sharps: int, minor: bool) -> tuple[int, str]:
    """A MIDI key signature (sharps > 0, flats < 0; major or minor) as (tonic pitch class, mode)."""
    return ((7 * sharps + (9 if minor else 0)) % 12, MINOR if minor else MAJOR)
