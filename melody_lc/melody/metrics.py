"""Pure, vectorised metrics of melodies, used by the data summary and later by the rules.

Every function takes tokens of shape ``(..., 256)`` (one melody or a batch, any integer dtype) in
the encoding pinned down by :class:`melody_lc.melody.Melody` and returns numpy arrays with the same
leading shape. Whole bars of a melody (``(..., 16 * bars)``, as a rule scoped to bars sees them) are
measured the same way: "256" below is then the steps given, "16 bars" the bars given. Nothing here depends on torch: scoring tens of thousands of melodies is a few numpy
passes.
"""

from __future__ import annotations

import numpy as np

from melody_lc.melody.encoding import BAR_STEPS, HOLD, NUM_PITCHES, STEPS

# Krumhansl-Kessler key profiles (Krumhansl 1990), index 0 = tonic.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)


def _tokens(tokens) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim == 0 or not 0 < arr.shape[-1] <= STEPS or arr.shape[-1] % BAR_STEPS:
        raise ValueError(f"expected tokens of shape (..., {STEPS}) (or whole bars of it), got {arr.shape}")
    return arr.astype(np.int16, copy=False)


def onsets(tokens) -> np.ndarray:
    """Boolean ``(..., 256)``: True where a note starts."""
    return _tokens(tokens) < NUM_PITCHES


def sounding_pitch(tokens) -> np.ndarray:
    """``(..., 256)`` int16: the MIDI pitch sounding at each step, or -1 where silent.

    A hold continues whatever the previous step had (a note or silence); a hold at step 0 is silence.
    """
    t = _tokens(tokens)
    event = t != HOLD
    idx = np.where(event, np.arange(t.shape[-1]), 0)
    np.maximum.accumulate(idx, axis=-1, out=idx)  # index of the last event at or before each step
    last = np.take_along_axis(t, idx, axis=-1)
    pitch = np.where(last < NUM_PITCHES, last, -1)
    # Step 0 has no previous event when it is a hold: silent.
    no_event_yet = ~np.logical_or.accumulate(event, axis=-1)
    return np.where(no_event_yet, -1, pitch).astype(np.int16)


def notes_per_bar(tokens) -> np.ndarray:
    """``(..., 16)`` int: number of note onsets in each bar."""
    on = onsets(tokens)
    return on.reshape(*on.shape[:-1], -1, BAR_STEPS).sum(-1)


def note_count(tokens) -> np.ndarray:
    """``(...)`` int: number of notes in the melody."""
    return onsets(tokens).sum(-1)


def pitch_class_histogram(tokens, weight: str = "count") -> np.ndarray:
    """``(..., 12)`` float: pitch-class distribution of the notes, summing to 1 (0 when no notes).

    ``weight="count"`` counts each note once; ``weight="duration"`` weights it by its length in steps.
    """
    t = _tokens(tokens)
    if weight == "count":
        pitch, mask = t, t < NUM_PITCHES
    elif weight == "duration":
        pitch = sounding_pitch(t)
        mask = pitch >= 0
    else:
        raise ValueError(f"weight must be 'count' or 'duration', not {weight!r}")
    pc = np.where(mask, pitch % 12, 12)
    flat = pc.reshape(-1, t.shape[-1])
    hist = np.zeros((flat.shape[0], 13))
    np.add.at(hist, (np.arange(flat.shape[0])[:, None], flat), 1.0)
    hist = hist[:, :12].reshape(*t.shape[:-1], 12)
    total = hist.sum(-1, keepdims=True)
    return np.divide(hist, total, out=np.zeros_like(hist), where=total > 0)


def pitch_range(tokens) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) MIDI pitch of the notes, each ``(...)`` int; -1 for a melody without notes."""
    t = _tokens(tokens)
    is_note = t < NUM_PITCHES
    low = np.where(is_note, t, 999).min(-1)
    high = np.where(is_note, t, -1).max(-1)
    return np.where(low == 999, -1, low), high


def intervals(tokens) -> tuple[np.ndarray, np.ndarray]:
    """Signed semitone steps between successive notes.

    Returns ``(steps, mask)``, both ``(..., 255)``: ``steps[..., i]`` is the interval from the i-th
    note to the next one and ``mask`` says which entries are real (a melody of n notes has n - 1).
    Rests between notes do not break the succession.
    """
    t = _tokens(tokens)
    is_note = t < NUM_PITCHES
    # Sort each row so that note pitches come first, in time order (stable sort on ~is_note).
    order = np.argsort(~is_note, axis=-1, kind="stable")
    pitches = np.take_along_axis(t, order, axis=-1)
    count = is_note.sum(-1, keepdims=True)
    steps = np.diff(pitches, axis=-1)
    mask = np.arange(t.shape[-1] - 1) < (count - 1)
    return np.where(mask, steps, 0), mask


def largest_leap(tokens) -> np.ndarray:
    """``(...)`` int: the largest absolute interval between successive notes (0 with < 2 notes)."""
    steps, _ = intervals(tokens)
    return np.abs(steps).max(-1)


def interval_histogram(tokens, max_interval: int = 12) -> np.ndarray:
    """``(..., 2 * max_interval + 1)``: counts of signed intervals, clipped to +-max_interval."""
    steps, mask = intervals(tokens)
    clipped = np.clip(steps, -max_interval, max_interval) + max_interval
    width = 2 * max_interval + 1
    flat_steps = np.where(mask, clipped, width).reshape(-1, steps.shape[-1])
    hist = np.zeros((flat_steps.shape[0], width + 1), dtype=np.int64)
    np.add.at(hist, (np.arange(flat_steps.shape[0])[:, None], flat_steps), 1)
    return hist[:, :width].reshape(*steps.shape[:-1], width)


def rest_fraction(tokens) -> np.ndarray:
    """``(...)`` float: share of the 256 steps where no note sounds."""
    return (sounding_pitch(tokens) < 0).mean(-1)


def distinct_pitches(tokens) -> np.ndarray:
    """``(...)`` int: number of different MIDI pitches used."""
    t = _tokens(tokens)
    flat = np.where(t < NUM_PITCHES, t, HOLD).reshape(-1, t.shape[-1])
    present = np.zeros((flat.shape[0], 129), dtype=bool)
    present[np.arange(flat.shape[0])[:, None], flat] = True
    return present[:, :128].sum(-1).reshape(t.shape[:-1])


def key_profiles() -> np.ndarray:
    """``(24, 12)``: Krumhansl-Kessler profiles of the 12 major keys (rows 0-11) then 12 minor keys."""
    rows = [np.roll(_MAJOR_PROFILE, k) for k in range(12)] + [np.roll(_MINOR_PROFILE, k) for k in range(12)]
    return np.stack(rows)


def best_key(pc_histogram) -> np.ndarray:
    """``(...)`` int in 0-23: the key whose profile correlates best with a pitch-class histogram.

    0-11 are C major .. B major, 12-23 C minor .. B minor (Krumhansl-Schmuckler). A melody without
    notes gets 0 (C major).
    """
    h = np.asarray(pc_histogram, dtype=np.float64)
    prof = key_profiles()
    hc = h - h.mean(-1, keepdims=True)
    pcn = prof - prof.mean(-1, keepdims=True)
    num = hc @ pcn.T
    den = np.linalg.norm(hc, axis=-1, keepdims=True) * np.linalg.norm(pcn, axis=-1)
    corr = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return corr.argmax(-1)


def key_name(key_index: int) -> str:
    """'C major', 'F# minor'... for an index from :func:`best_key`."""
    return f"{PITCH_CLASS_NAMES[key_index % 12]} {'major' if key_index < 12 else 'minor'}"


def in_key_fraction(tokens, key_index) -> np.ndarray:
    """``(...)`` float: share of notes whose pitch class lies in the given key's diatonic scale."""
    t = _tokens(tokens)
    key_index = np.asarray(key_index)
    tonic = (key_index % 12)[..., None]
    scale = np.where((key_index < 12)[..., None], np.array(MAJOR_SCALE), np.array(NATURAL_MINOR_SCALE))
    is_note = t < NUM_PITCHES
    degree = (t - tonic) % 12
    in_scale = (degree[..., :, None] == scale[..., None, :]).any(-1) & is_note
    count = is_note.sum(-1)
    return np.divide(in_scale.sum(-1), count, out=np.zeros(count.shape), where=count > 0)


__all__ = [
    "best_key",
    "distinct_pitches",
    "in_key_fraction",
    "interval_histogram",
    "intervals",
    "key_name",
    "key_profiles",
    "largest_leap",
    "note_count",
    "notes_per_bar",
    "onsets",
    "pitch_class_histogram",
    "pitch_range",
    "rest_fraction",
    "sounding_pitch",
]


def phrase_repeats(tokens, bars: int = 4) -> np.ndarray:
    """``(...)`` float: the share of pairs of ``bars``-bar phrases (6 pairs of 4-bar phrases in 16
    bars) that are the same note for note."""
    t = _tokens(tokens)
    phrases = t.reshape(*t.shape[:-1], -1, bars * BAR_STEPS)
    k = phrases.shape[-2]
    pairs = [(i, j) for j in range(k) for i in range(j)]
    same = np.stack([(phrases[..., i, :] == phrases[..., j, :]).all(-1) for i, j in pairs], -1)
    return same.mean(-1)
