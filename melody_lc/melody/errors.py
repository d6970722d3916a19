"""Domain exceptions of the melody modality.

Every error a user can cause with bad melody data is one of these (all are
:class:`melody_lc.errors.UserError`, which the CLI reports in one line with exit code 2).
"""

from melody_lc.errors import UserError


class MelodyError(UserError):
    """Base class of every melody-domain error."""


class MelodyLengthError(MelodyError):
    """A melody does not have exactly 256 steps (16 bars of 16 sixteenth notes)."""


class MelodyTokenError(MelodyError):
    """A token is outside the 130 classes (a pitch outside 0-127, or an unknown class)."""


class PolyphonicMelodyError(MelodyError):
    """Two notes sound at once where a monophonic line is required (e.g. a piano roll)."""


class BadMidiFileError(MelodyError):
    """A file is not a readable MIDI file (empty, truncated, not MIDI, type 2, bad bytes...)."""


class UnsupportedMeterError(MelodyError):
    """A time signature whose bars do not map onto 16-step bars (e.g. 3/4, 6/8)."""


class PrecisionError(MelodyError):
    """A precision the machine cannot run (bf16 where torch has no bf16 LSTM)."""
