"""Extraction of 16-bar training windows from a piece of music (the paper's data pipeline).

Piece (from a MIDI file, a music21 tune or a NoteSequence, see :mod:`melody_lc.melody.piece`)
  -> quantize to 4 steps per quarter                             :func:`quantized_notes`
  -> split at time-signature changes; keep meters of 16-step bars :func:`meter_segments`
  -> each non-drum instrument made monophonic (highest pitch)    :func:`skyline`
  -> 16-bar windows with a 1-bar stride, nearly empty ones dropped, duplicates removed
                                                                  :func:`extract_windows`

Times are in quarter notes, so tempo changes (which note_seq's own ``quantize_note_sequence``
refuses, and most real MIDI files have) do not matter; the rounding is note_seq's (half up).
Every function here also takes a NoteSequence (with the ``note-seq`` extra).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from melody_lc.melody import metrics
from melody_lc.melody.encoding import BAR_STEPS, HOLD, NUM_PITCHES, REST, STEPS, STEPS_PER_QUARTER, canonical
from melody_lc.melody.errors import MelodyError
from melody_lc.melody.piece import MINOR, as_piece

NOTE_DTYPE = np.dtype(
    [("pitch", np.int16), ("start", np.int64), ("end", np.int64), ("instrument", np.int32), ("is_drum", np.bool_)]
)

EXTRACTION_VERSION = 2  # bump whenever the windows extracted from the same input change (caches rebuild)
MAX_TUNE_STEPS = 1 << 17  # 8,192 bars: anything longer is a broken file, not a tune


@dataclass(frozen=True)
class ExtractionConfig:
    """How windows are cut. Saved in the dataset manifest, so a cache knows what it holds."""

    min_notes: int = 16  # a window with fewer note onsets (about one a bar) is "nearly empty"
    max_rest_fraction: float = 0.5  # ... and so is one that is silent more than half the time
    all_meters: bool = False  # True: cut other meters (3/4, 6/8, ...) into 16-step bars regardless
    stride_bars: int = 1
    expand_repeats: bool = True  # music21 tunes: play repeats out (the tune as performed)


@dataclass
class TuneWindows:
    """What one tune (a MIDI file, or one tune of a corpus file) gives."""

    name: str
    windows: np.ndarray  # (N, 256) uint8, canonical, unique within the tune
    meters: list[str]  # the meters the tune uses, e.g. ["4/4"]
    key: str  # declared key if the source names one, else estimated (Krumhansl-Kessler)
    content_key: bytes  # transposition-invariant fingerprint of the whole tune (for splits)
    dropped_empty: int = 0
    dropped_duplicate: int = 0
    skipped_meters: list[str] = field(default_factory=list)  # meters present but not used


def compatible_meter(numerator: int, denominator: int) -> bool:
    """True when bars of this meter line up with 16-step bars: 4/4, 2/4, 2/2, 4/2 (two bars of 16)..."""
    bar = Fraction(numerator * 16, denominator)  # bar length in sixteenths
    return bar.denominator == 1 and bar > 0 and (16 % int(bar) == 0 or int(bar) % 16 == 0)


def _to_steps(quarters) -> np.ndarray:
    # note_seq's rule: int(x + 0.5) with a small tolerance for float error.
    return np.floor(np.asarray(quarters, dtype=np.float64) * STEPS_PER_QUARTER + 0.5 + 1e-6).astype(np.int64)


def quantized_notes(source) -> np.ndarray:
    """The notes of a piece (or NoteSequence) on the sixteenth grid, as a structured array
    (``NOTE_DTYPE``). A note never has zero length (at least one step)."""
    piece = as_piece(source)
    out = np.zeros(len(piece.notes), dtype=NOTE_DTYPE)
    if not len(out):
        return out
    for name in ("pitch", "instrument", "is_drum"):
        out[name] = piece.notes[name]
    out["start"] = _to_steps(piece.notes["start"])
    out["end"] = np.maximum(_to_steps(piece.notes["end"]), out["start"] + 1)
    if (out["start"] < 0).any():
        raise MelodyError("a note starts before time 0")
    if out["end"].max() > MAX_TUNE_STEPS:
        raise MelodyError(f"longer than {MAX_TUNE_STEPS // BAR_STEPS:,} bars (a broken tempo or time?)")
    return out


def meter_segments(source, total_steps: int) -> list[tuple[int, int, int, int]]:
    """``(start_step, end_step, numerator, denominator)`` spans of constant time signature.

    Without a time signature the whole piece is 4/4 (MIDI's default). Repeated signatures merge.
    """
    sigs = sorted(as_piece(source).time_signatures, key=lambda x: x[0])
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0.0, 4, 4))
    starts = _to_steps([s[0] for s in sigs])
    at_step: dict[int, tuple[int, int]] = {}
    for start, (_, num, den) in zip(starts, sigs, strict=True):
        at_step[int(start)] = (num, den)  # two signatures at one step: the later one wins
    changes = sorted(at_step.items())
    segments: list[list[int]] = []
    for start, meter in changes:
        if segments and tuple(segments[-1][2:]) == meter:
            continue  # the same meter again: one segment
        if segments:
            segments[-1][1] = start
        segments.append([start, 0, *meter])
    segments[-1][1] = total_steps
    return [
        (start, min(end, total_steps), num, den) for start, end, num, den in segments if min(end, total_steps) > start
    ]


def skyline(notes: np.ndarray, total_steps: int) -> np.ndarray:
    """Monophonic tokens ``(total_steps,)`` from (possibly overlapping) notes: the highest line.

    At each onset the highest starting pitch is taken; it replaces the sounding note unless that
    note is higher and still sounding, in which case the new, lower note is dropped. When a kept
    note ends, silence follows (a lower note already under way is not resumed mid-way).
    """
    tokens = np.full(total_steps, HOLD, dtype=np.int16)
    if total_steps:
        tokens[0] = REST
    order = np.lexsort((-notes["pitch"].astype(np.int64), notes["start"]))
    cur_pitch, cur_end, last_start = -1, 0, -1
    for i in order:
        start = int(notes["start"][i])
        if start >= total_steps:
            break
        pitch, end = int(notes["pitch"][i]), min(int(notes["end"][i]), total_steps)
        if start < cur_end and (pitch < cur_pitch or (start == last_start)):
            continue  # lower than the sounding note, or a lower note of the same onset
        if cur_end < start:
            tokens[cur_end] = REST
        tokens[start] = pitch
        tokens[start + 1 : end] = HOLD
        cur_pitch, cur_end, last_start = pitch, end, start
        if end < total_steps:
            tokens[end] = REST
    return tokens


def _fingerprint(lines: list[np.ndarray]) -> bytes:
    """A transposition-invariant hash of melody lines: pitches relative to each line's first note."""
    h = hashlib.blake2b(digest_size=16)
    parts = []
    for line in lines:
        t = line.astype(np.int16)
        notes = t[t < NUM_PITCHES]
        rel = np.where(t < NUM_PITCHES, t - (notes[0] if notes.size else 0) + 1000, t)
        parts.append(rel.astype(np.int16).tobytes())
    for p in sorted(parts):
        h.update(p)
    return h.digest()


def declared_key(source) -> str | None:
    """The piece's first key signature as 'G major' / 'E minor', if it has one."""
    keys = sorted(as_piece(source).keys, key=lambda k: k[0])
    return metrics.key_name(keys[0][1] + (12 if keys[0][2] == MINOR else 0)) if keys else None


def extract_windows(source, name: str, config: ExtractionConfig = ExtractionConfig()) -> TuneWindows:
    """Every usable 16-bar window of a piece (see the module docstring)."""
    piece = as_piece(source)
    notes = quantized_notes(piece)
    notes = notes[~notes["is_drum"]]
    total = -(-int(notes["end"].max(initial=0)) // BAR_STEPS) * BAR_STEPS  # up to a whole bar
    segments = meter_segments(piece, total)
    meters = sorted({f"{num}/{den}" for _, _, num, den in segments})
    skipped = sorted({f"{num}/{den}" for _, _, num, den in segments if not compatible_meter(num, den)})
    usable = segments if config.all_meters else [s for s in segments if compatible_meter(s[2], s[3])]

    lines, windows, seen = [], [], set()
    empty = dup = 0
    for inst in np.unique(notes["instrument"]):
        line = skyline(notes[notes["instrument"] == inst], total)
        lines.append(line)
        for seg_start, seg_end, _, _ in usable:
            starts = range(seg_start, seg_end - STEPS + 1, BAR_STEPS * config.stride_bars)
            if not len(starts):
                continue
            cand = canonical(np.stack([line[s : s + STEPS] for s in starts]))
            keep = (metrics.note_count(cand) >= config.min_notes) & (
                metrics.rest_fraction(cand) <= config.max_rest_fraction
            )
            empty += int((~keep).sum())
            for w in cand[keep]:
                b = w.tobytes()
                if b in seen:
                    dup += 1
                    continue
                seen.add(b)
                windows.append(w)

    key = declared_key(piece)
    if key is None:
        all_tokens = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int16)
        pcs = all_tokens[all_tokens < NUM_PITCHES] % 12
        hist = np.bincount(pcs, minlength=12).astype(float)
        key = metrics.key_name(int(metrics.best_key(hist))) + " (est.)" if pcs.size else "none"
    return TuneWindows(
        name=name,
        windows=np.stack(windows) if windows else np.zeros((0, STEPS), dtype=np.uint8),
        meters=meters,
        key=key,
        content_key=_fingerprint(lines),
        dropped_empty=empty,
        dropped_duplicate=dup,
        skipped_meters=skipped if not config.all_meters else [],
    )
