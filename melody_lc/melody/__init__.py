"""The melody modality: the :class:`Melody` type, its 130-class encoding, metrics and data."""

from melody_lc.melody.encoding import HOLD, NUM_CLASSES, REST, STEPS
from melody_lc.melody.errors import (
    BadMidiFileError,
    MelodyError,
    MelodyLengthError,
    MelodyTokenError,
    PolyphonicMelodyError,
    UnsupportedMeterError,
)
from melody_lc.melody.melody import Melody

__all__ = [
    "HOLD",
    "NUM_CLASSES",
    "REST",
    "STEPS",
    "BadMidiFileError",
    "Melody",
    "MelodyError",
    "MelodyLengthError",
    "MelodyTokenError",
    "PolyphonicMelodyError",
    "UnsupportedMeterError",
]
