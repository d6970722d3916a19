"""Pitch names, scales and modes, and the values of open rule parameters: how a composer writes
them and how melody-lc shows them. Used by the rules language, chains, the CLI and the TUI.

* pitch classes: ``C``, ``F#``, ``Bb`` (case-insensitive, sharps and flats) -> 0..11
* notes: ``C4`` = 60 (scientific pitch notation, ``C-1`` = 0) or a MIDI number 0..127
* open parameters (``?`` in a rules file): a category (``("category", n)``: a tonic as a pitch class
  or 0..n-1) or a number in a range (``("range", low, high)``)
"""

from __future__ import annotations

import math

PITCH_CLASSES = {
    "c": 0,
    "c#": 1,
    "db": 1,
    "d": 2,
    "d#": 3,
    "eb": 3,
    "e": 4,
    "fb": 4,
    "e#": 5,
    "f": 5,
    "f#": 6,
    "gb": 6,
    "g": 7,
    "g#": 8,
    "ab": 8,
    "a": 9,
    "a#": 10,
    "bb": 10,
    "b": 11,
    "cb": 11,
    "b#": 0,
}
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "natural minor": (0, 2, 3, 5, 7, 8, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
# Chord symbols as lead sheets write them: root, quality, optional /bass (C, Am, G7, Fmaj7, Bdim,
# Dm7b5, Csus4, C6, C/E). Qualities are case-sensitive (M7 is major seventh, m7 minor seventh).
CHORD_QUALITIES = {
    "": (0, 4, 7),
    "maj": (0, 4, 7),
    "M": (0, 4, 7),
    "m": (0, 3, 7),
    "min": (0, 3, 7),
    "-": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "M7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "min7": (0, 3, 7, 10),
    "-7": (0, 3, 7, 10),
    "mM7": (0, 3, 7, 11),
    "dim": (0, 3, 6),
    "o": (0, 3, 6),
    "dim7": (0, 3, 6, 9),
    "o7": (0, 3, 6, 9),
    "m7b5": (0, 3, 6, 10),
    "aug": (0, 4, 8),
    "+": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "sus": (0, 5, 7),
    "7sus4": (0, 5, 7, 10),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "9": (0, 4, 7, 10, 2),
    "maj9": (0, 4, 7, 11, 2),
    "m9": (0, 3, 7, 10, 2),
    "add9": (0, 4, 7, 2),
}
CHORD_EXAMPLE = "a chord symbol such as C, Am, G7, Fmaj7, Bdim, Dm7b5, Csus4, C6 or C/E"
PITCH_CLASS_EXAMPLE = "a pitch class such as C, F# or Bb"
NOTE_EXAMPLE = "a note such as C4, F#3 or Bb5, or a MIDI number"


def pitch_class(text: str) -> int | None:
    """``F#`` -> 6; None when ``text`` names no pitch class."""
    return PITCH_CLASSES.get(text.lower())


def note_number(text: str) -> int | None:
    """``C4`` -> 60, ``C-1`` -> 0, ``64`` -> 64; None when ``text`` is no note (range not checked)."""
    if text.isdigit():
        return int(text)
    cut = -2 if len(text) >= 3 and text[-2] == "-" else -1
    pc, octave = pitch_class(text[:cut]), text[cut:]
    if pc is None or not octave.lstrip("-").isdigit():
        return None
    return 12 * (int(octave) + 1) + pc


def pitch_name(p: int) -> str:
    """60 -> ``C4``."""
    return f"{NAMES[p % 12]}{p // 12 - 1}"


def chord(symbol: str) -> tuple[int, tuple[int, ...], int] | None:
    """``Am7/G`` -> (root 9, pitch classes of the chord with its bass, bass 7); None when the root
    or the bass is no pitch class; KeyError(quality) when the quality is unknown."""
    body, _, bass_text = symbol.partition("/")
    cut = 2 if len(body) > 1 and body[1] in "#b" and pitch_class(body[:2]) is not None else 1
    root = pitch_class(body[:cut])
    bass = pitch_class(bass_text) if bass_text else root
    if root is None or bass is None:
        return None
    quality = body[cut:]
    if quality not in CHORD_QUALITIES and quality.lower() not in ("maj", "min", "dim", "aug", "sus2", "sus4", "sus"):
        raise KeyError(quality)
    intervals = CHORD_QUALITIES.get(quality, CHORD_QUALITIES.get(quality.lower()))
    return root, tuple(sorted({(root + i) % 12 for i in intervals} | {bass})), bass


def pitch_class_name(pc: int) -> str:
    return NAMES[int(pc) % 12]


def parse_open_value(name: str, spec: tuple, text: str) -> float | int:
    """The value of open parameter ``name`` (its ``spec`` from ``RuleSet.open``) written as ``text``;
    ValueError saying what was expected."""
    if spec[0] == "category":
        pc = pitch_class(text) if name == "tonic" else None
        if pc is None and text.isdigit() and int(text) < spec[1]:
            pc = int(text)
        if pc is None:
            raise ValueError(
                f"{name}: expected "
                + (PITCH_CLASS_EXAMPLE if name == "tonic" else f"a number from 0 to {spec[1] - 1}")
                + f", found '{text}'"
            )
        return pc
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not spec[1] <= x <= spec[2]:
        raise ValueError(f"{name}: expected a number from {spec[1]:g} to {spec[2]:g}, found '{text}'")
    return x


def format_open_value(name: str, spec: tuple | None, value) -> str:
    """How an open parameter's value reads: a note name for a tonic, a number otherwise."""
    if spec is not None and spec[0] == "category" and name == "tonic":
        return pitch_class_name(value)
    return f"{value:g}"
