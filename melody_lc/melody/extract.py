"""Extraction of 16-bar training windows from a NoteSequence (the paper's data pipeline).

NoteSequence (from a MIDI file or a music21 tune)
  -> quantize to 4 steps per quarter along the tempo map        :func:`quantized_notes`
  -> split at time-signature changes; keep meters of 16-step bars :func:`meter_segments`
  -> each non-drum instrument made monophonic (highest pitch)    :func:`skyline`
  -> 16-bar windows with a 1-bar stride, nearly empty ones dropped, duplicates removed
                                                                  :func:`extract_windows`

note_seq's own ``quantize_note_sequence`` refuses tempo changes, which most real MIDI files have;
quantizing along the tempo map is the same rule (round half up, as note_seq) in quarter notes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from melody_lc.melody import metrics
from melody_lc.melody.encoding import BAR_STEPS, HOLD, REST, STEPS, STEPS_PER_QUARTER, canonical
from melody_lc.melody.errors import MelodyError

NOTE_DTYPE = np.dtype([("pitch", np.int16), ("start", np.int64), ("end", np.int64),
                       ("instrument", np.int32), ("is_drum", np.bool_)])

EXTRACTION_VERSION = 2  # bump whenever the windows extracted from the same input change (caches rebuild)
MAX_TUNE_STEPS = 1 << 17  # 8,192 bars: anything longer is a broken file, not a tune

# note_seq KeySignature modes that name a major or minor key; the other church modes are left out.
_NS_MAJOR, _NS_MINOR = 0, 1


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


def _quarters(times: np.ndarray, sequence) -> np.ndarray:
    """Seconds -> quarter notes, following the sequence's tempo changes (120 qpm if it has none)."""
    tempos = sorted(((t.time, t.qpm) for t in sequence.tempos), key=lambda x: x[0])
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0.0, 120.0))  # MIDI's default tempo until the first tempo event
    t0 = np.array([t for t, _ in tempos])
    qpm = np.array([q for _, q in tempos])
    q0 = np.concatenate([[0.0], np.cumsum(np.diff(t0) * qpm[:-1] / 60.0)])
    i = np.searchsorted(t0, times, side="right") - 1
    return q0[i] + (times - t0[i]) * qpm[i] / 60.0


def _to_steps(times: np.ndarray, sequence) -> np.ndarray:
    # note_seq's rule: int(x + 0.5) with a small tolerance for float error.
    return np.floor(_quarters(np.asarray(times, dtype=np.float64), sequence) * STEPS_PER_QUARTER + 0.5 + 1e-6).astype(np.int64)


def quantized_notes(sequence) -> np.ndarray:
    """The notes of a NoteSequence on the sixteenth grid, as a structured array (``NOTE_DTYPE``).

    A sequence already quantized at 4 steps per quarter keeps its quantized steps; otherwise note
    times are quantized along the tempo map. A note never has zero length (at least one step).
    """
    n = len(sequence.notes)
    out = np.zeros(n, dtype=NOTE_DTYPE)
    if n == 0:
        return out
    out["pitch"] = [x.pitch for x in sequence.notes]
    out["instrument"] = [x.instrument for x in sequence.notes]
    out["is_drum"] = [x.is_drum for x in sequence.notes]
    if sequence.quantization_info.steps_per_quarter == STEPS_PER_QUARTER:
        out["start"] = [x.quantized_start_step for x in sequence.notes]
        out["end"] = [x.quantized_end_step for x in sequence.notes]
    else:
        out["start"] = _to_steps([x.start_time for x in sequence.notes], sequence)
        out["end"] = _to_steps([x.end_time for x in sequence.notes], sequence)
    out["end"] = np.maximum(out["end"], out["start"] + 1)
    if (out["start"] < 0).any():
        raise MelodyError("a note starts before time 0")
    if out["end"].max() > MAX_TUNE_STEPS:
        raise MelodyError(f"longer than {MAX_TUNE_STEPS // BAR_STEPS:,} bars (a broken tempo or time?)")
    return out


def meter_segments(sequence, total_steps: int) -> list[tuple[int, int, int, int]]:
    """``(start_step, end_step, numerator, denominator)`` spans of constant time signature.

    Without a time signature the whole sequence is 4/4 (MIDI's default). Repeated signatures merge.
    """
    sigs = sorted(((ts.time, ts.numerator, ts.denominator) for ts in sequence.time_signatures), key=lambda x: x[0])
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0.0, 4, 4))
    starts = _to_steps([s[0] for s in sigs], sequence)
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
    return [(start, min(end, total_steps), num, den) for start, end, num, den in segments if min(end, total_steps) > start]


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
        notes = t[t < 128]
        rel = np.where(t < 128, t - (notes[0] if notes.size else 0) + 1000, t)
        parts.append(rel.astype(np.int16).tobytes())
    for p in sorted(parts):
        h.update(p)
    return h.digest()


def declared_key(sequence) -> str | None:
    """The sequence's first key signature as 'G major' / 'E minor', if it has a major or minor one."""
    for ks in sorted(sequence.key_signatures, key=lambda k: k.time):
        if ks.mode in (_NS_MAJOR, _NS_MINOR):
            return metrics.key_name(ks.key % 12 + (12 if ks.mode == _NS_MINOR else 0))
    return None


def extract_windows(sequence, name: str, config: ExtractionConfig = ExtractionConfig()) -> TuneWindows:
    """Every usable 16-bar window of a NoteSequence (see the module docstring)."""
    notes = quantized_notes(sequence)
    notes = notes[~notes["is_drum"]]
    total = -(-int(notes["end"].max(initial=0)) // BAR_STEPS) * BAR_STEPS  # up to a whole bar
    segments = meter_segments(sequence, total)
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
            keep = (metrics.note_count(cand) >= config.min_notes) & (metrics.rest_fraction(cand) <= config.max_rest_fraction)
            empty += int((~keep).sum())
            for w in cand[keep]:
                b = w.tobytes()
                if b in seen:
                    dup += 1
                    continue
                seen.add(b)
                windows.append(w)

    key = declared_key(sequence)
    if key is None:
        all_tokens = np.concatenate(lines) if lines else np.zeros(0, dtype=np.int16)
        pcs = all_tokens[all_tokens < 128] % 12
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
