"""Metrics against values worked out by hand, and batch results equal to one-by-one results."""

from __future__ import annotations

import numpy as np

from melody_lc.melody import Melody
from melody_lc.melody import metrics as M
from tests.conftest import random_melody_tokens

# C4 E4 G4 (quarter notes) in bar 0; rest; A3 in bar 2 (half note); B4 at the last step.
NOTES = [(60, 0, 4), (64, 4, 8), (67, 8, 12), (57, 32, 40), (71, 255, 256)]
MEL = Melody.from_notes(NOTES)


def test_hand_computed_values():
    t = MEL.tokens
    npb = M.notes_per_bar(t)
    assert npb.tolist() == [3, 0, 1] + [0] * 12 + [1]
    assert M.note_count(t) == 5
    assert M.pitch_range(t) == (57, 71)
    steps, mask = M.intervals(t)
    assert steps[mask].tolist() == [4, 3, -10, 14]
    assert M.largest_leap(t) == 14
    sounding = 4 + 4 + 4 + 8 + 1
    assert M.rest_fraction(t) == (256 - sounding) / 256
    assert M.distinct_pitches(t) == 5
    hist = M.pitch_class_histogram(t)
    assert hist[0] == hist[4] == hist[7] == hist[9] == hist[11] == 0.2
    dur = M.pitch_class_histogram(t, weight="duration")
    assert dur[9] == 8 / sounding and dur[11] == 1 / sounding
    ih = M.interval_histogram(t, max_interval=12)
    assert ih[12 + 4] == 1 and ih[12 + 3] == 1 and ih[12 - 10] == 1 and ih[24] == 1  # +14 clipped to 12
    assert ih.sum() == 4


def test_sounding_pitch_follows_holds_and_rests():
    sp = M.sounding_pitch(MEL.tokens)
    assert sp[0] == 60 and sp[3] == 60 and sp[11] == 67 and sp[12] == -1 and sp[31] == -1 and sp[39] == 57


def test_empty_melody():
    t = Melody(np.full(256, 129)).tokens
    assert M.note_count(t) == 0 and M.pitch_range(t) == (-1, -1) and M.largest_leap(t) == 0
    assert M.rest_fraction(t) == 1.0 and M.pitch_class_histogram(t).sum() == 0


def test_batches_equal_single_results():
    rng = np.random.default_rng(1)
    batch = np.stack([Melody(t).tokens for t in random_melody_tokens(rng, 40)])
    for fn in (
        M.notes_per_bar,
        M.note_count,
        M.largest_leap,
        M.rest_fraction,
        M.distinct_pitches,
        M.pitch_class_histogram,
        M.interval_histogram,
        M.sounding_pitch,
    ):
        together = fn(batch)
        one_by_one = np.stack([fn(row) for row in batch])
        np.testing.assert_array_equal(together, one_by_one)
    lo, hi = M.pitch_range(batch.reshape(4, 10, 256))
    assert lo.shape == (4, 10) and (lo <= hi).all()


def test_key_finding():
    c_major = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], float)
    assert M.key_name(int(M.best_key(c_major))) == "C major"
    a_minor_weighted = np.array([2, 0, 1, 0, 2, 1, 0, 1, 0, 4, 0, 1], float)
    assert M.key_name(int(M.best_key(a_minor_weighted))) == "A minor"
    assert M.key_name(int(M.best_key(np.roll(c_major, 7)))) == "G major"
    assert M.in_key_fraction(MEL.tokens, 0) == 1.0  # A C E G B all lie in C major
    assert M.in_key_fraction(MEL.tokens, 2) == 4 / 5  # D major has A, E, G, B but not C
    assert M.in_key_fraction(Melody.from_notes([(61, 0, 4), (60, 4, 8)]).tokens, 0) == 0.5
