"""Reading and describing rule arguments: pitch classes, notes, and bounds (``>= a``, ``a .. b``,
``at most b``, ``?``), with errors located in the rules file. Used by the built-in kinds and open to
plugins."""

from __future__ import annotations

import numpy as np

from melody_lc.melody.pitches import NOTE_EXAMPLE, PITCH_CLASS_EXAMPLE, note_number, pitch_class
from melody_lc.rules.syntax import Cursor


def parse_pitch_class(cur: Cursor) -> int:
    tok = cur.next(PITCH_CLASS_EXAMPLE)
    pc = pitch_class(tok.text)
    if pc is None:
        cur.fail(f"expected {PITCH_CLASS_EXAMPLE}, found '{tok.text}'", tok.column)
    return pc


def parse_pitch(cur: Cursor) -> int:
    """A note name with octave (C4 = 60, as in scientific pitch notation) or a MIDI number."""
    tok = cur.next("a note such as C4 or a MIDI number")
    value = note_number(tok.text)
    if value is None:
        cur.fail(f"expected {NOTE_EXAMPLE}, found '{tok.text}'", tok.column)
    if not 0 <= value <= 127:
        cur.fail(f"note {tok.text} is outside MIDI's range 0-127", tok.column)
    return value


def parse_bounds(cur: Cursor, what: str, integer: bool = True, allow_open: bool = False, percent: bool = False) -> dict:
    """``>= a``, ``<= b``, ``at least a``, ``at most b``, ``a .. b`` or ``a`` (exactly).

    With ``allow_open``, ``>= ?`` / ``<= ?`` leave the bound open (chosen when generating).
    Returns ``{"low", "high", "open", "op"}``.
    """
    op = cur.accept(">=", "<=", "=", "==", "at")
    if op is not None and op.text.lower() == "at":
        op = cur.expect("least", "most")
        kind = ">=" if op.text.lower() == "least" else "<="
    else:
        kind = op.text if op is not None else None

    def value():
        if allow_open and kind in (">=", "<=") and cur.accept("?"):
            return None
        v, tok = cur.number(what, integer=integer and not percent)
        if percent:
            cur.expect("%", what="'%'")
            v = v / 100.0
        if v < 0:
            cur.fail(f"{what} cannot be negative", tok.column)
        return v

    first_tok = cur.peek()
    a = value()
    low = high = None
    if kind == ">=":
        low = a
    elif kind == "<=":
        high = a
    elif kind is None and cur.accept(".."):
        low, high = a, value()
        if low > high:
            cur.fail(f"the range {low:g} .. {high:g} is empty (the first bound is larger)", first_tok.column)
    else:
        low = high = a
    return {"low": low, "high": high, "open": a is None, "op": kind}


def bound_violation(x: np.ndarray, low, high) -> np.ndarray:
    v = np.zeros(np.shape(x), dtype=float)
    if low is not None:
        v = v + np.maximum(0.0, low - x)
    if high is not None:
        v = v + np.maximum(0.0, x - high)
    return v


def bounds_words(low, high, unit: str, fmt=lambda v: f"{v:g}") -> str:
    if low is not None and high is not None:
        return f"exactly {fmt(low)} {unit}" if low == high else f"between {fmt(low)} and {fmt(high)} {unit}"
    if low is not None:
        return f"at least {fmt(low)} {unit}"
    return f"at most {fmt(high)} {unit}"
