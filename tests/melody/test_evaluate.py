"""Evaluation figures against models whose answers are known, and the feature overlap's bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from melody_lc.melody.evaluate import evaluate, feature_overlap, reconstruction_metrics
from melody_lc.melody.model import PRESETS, HierarchicalMelodyVAE
from tests.conftest import random_melody_tokens


def _windows(n=12):
    return random_melody_tokens(np.random.default_rng(3), n)


def _always(token: int) -> HierarchicalMelodyVAE:
    """A model that predicts ``token`` at every step, whatever it is given."""
    torch.manual_seed(0)
    model = HierarchicalMelodyVAE(PRESETS["tiny"])
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.fill_(-50.0)
        model.output.bias[token] = 50.0
    return model.eval()


def test_an_always_hold_model_scores_the_hold_share():
    w = _windows()
    r = reconstruction_metrics(_always(128), w, batch_size=5)  # batches of 5: a short last batch too
    hold = float((w == 128).mean())
    assert 0.2 < hold < 0.95 and r["hold_share"] == pytest.approx(hold)
    assert r["teacher_forced_accuracy"] == pytest.approx(hold) and r["free_running_accuracy"] == pytest.approx(hold)
    assert r["teacher_forced_note_accuracy"] == 0.0 and r["free_running_note_accuracy"] == 0.0
    assert r["windows"] == len(w)


def test_note_accuracy_counts_the_notes_it_gets_right():
    w = _windows()
    r = reconstruction_metrics(_always(60), w)
    notes = w < 128
    assert r["teacher_forced_note_accuracy"] == pytest.approx(float((w[notes] == 60).mean()))
    assert r["teacher_forced_accuracy"] == pytest.approx(float((w == 60).mean()))


def test_feature_overlap_is_one_for_the_same_data_and_falls_for_other_data():
    w = _windows(64)
    same = feature_overlap(w, w)
    assert all(v == pytest.approx(1.0) for v in same.values())
    sparse = np.full_like(w, 128)
    sparse[:, ::64] = 60  # four repeated notes: other density, no range, only unisons
    other = feature_overlap(sparse, w)
    assert other["notes_per_bar"] < 0.5 and other["pitch_range"] < 0.2 and other["mean"] < 0.6


def test_evaluate_is_reproducible():
    model = HierarchicalMelodyVAE(PRESETS["tiny"]).eval()
    a = evaluate(model, _windows(), num_samples=16)
    b = evaluate(model, _windows(), num_samples=16)
    assert a == b and set(a["feature_overlap"]) == {"notes_per_bar", "pitch_range", "intervals", "in_key_share", "mean"}
