"""Evaluation of a melody VAE on held-out windows, and prior samples against the data.

* teacher-forced token accuracy (all tokens, and on note-on steps only: about 60% of the corpus's
  tokens are holds, so "always hold" already scores about 0.6 overall; ``hold_share`` reports it);
* free-running reconstruction accuracy: argmax decode of the posterior mean, compared step by step;
* ELBO (nats per melody, the reconstruction log-likelihood minus the full KL) and KL in bits;
* feature overlap of prior samples with held-out data: for notes per bar, pitch range, the
  interval histogram and the share of notes in the best-fitting key, the overlap of the two
  normalised histograms (sum of the bin-wise minimum: 1 = identical, 0 = disjoint).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from melody_lc.melody import metrics
from melody_lc.melody.encoding import HOLD, NUM_PITCHES
from melody_lc.melody.model import MelodyVAE

LOG2 = math.log(2.0)


def _batches(windows: np.ndarray, batch_size: int):
    for i in range(0, len(windows), batch_size):
        yield torch.from_numpy(windows[i : i + batch_size].astype(np.int64))


@torch.inference_mode()
def reconstruction_metrics(model: MelodyVAE, windows: np.ndarray, batch_size: int = 256) -> dict:
    """Teacher-forced and free-running accuracies, ELBO and KL over ``windows`` (N, 256)."""
    model.eval()
    n = len(windows)
    tf_hits = tf_note_hits = fr_hits = fr_note_hits = notes = 0
    recon = kl = 0.0
    for tokens in _batches(windows, batch_size):
        mu, sigma = model.encode(tokens)
        logits = model.decode_logits(mu, tokens)  # teacher forcing from the posterior mean
        pred = logits.argmax(-1)
        is_note = tokens < NUM_PITCHES
        tf_hits += int((pred == tokens).sum())
        tf_note_hits += int((pred == tokens)[is_note].sum())
        notes += int(is_note.sum())
        # the ELBO's reconstruction term uses a sample of z, as training does
        z = mu + sigma * torch.randn_like(sigma)
        recon += float(
            F.cross_entropy(model.decode_logits(z, tokens).reshape(-1, 130), tokens.reshape(-1), reduction="sum")
        )
        kl += float((0.5 * (mu**2 + sigma**2 - 1.0) - torch.log(sigma)).sum())
        free = model.decode(mu, temperature=0)
        fr_hits += int((free == tokens).sum())
        fr_note_hits += int((free == tokens)[is_note].sum())
    steps = n * 256
    return {
        "windows": n,
        "hold_share": float((windows == HOLD).mean()) if n else 0.0,
        "teacher_forced_accuracy": tf_hits / steps,
        "teacher_forced_note_accuracy": tf_note_hits / max(notes, 1),
        "free_running_accuracy": fr_hits / steps,
        "free_running_note_accuracy": fr_note_hits / max(notes, 1),
        "elbo_nats": -(recon + kl) / n,
        "recon_nats": recon / n,
        "kl_bits": kl / n / LOG2,
    }


def features(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Per-melody (or per-interval) feature values used for the overlap."""
    lo, hi = metrics.pitch_range(tokens)
    steps, mask = metrics.intervals(tokens)
    keys = metrics.best_key(metrics.pitch_class_histogram(tokens))
    return {
        "notes_per_bar": metrics.notes_per_bar(tokens).ravel(),
        "pitch_range": np.where(hi >= 0, hi - lo, 0),
        "intervals": np.clip(steps[mask], -13, 13),
        "in_key_share": metrics.in_key_fraction(tokens, keys),
    }


FEATURE_BINS = {
    "notes_per_bar": np.arange(-0.5, 17.5, 1.0),
    "pitch_range": np.arange(-0.5, 49.5, 1.0),
    "intervals": np.arange(-13.5, 14.5, 1.0),
    "in_key_share": np.linspace(0.0, 1.0 + 1e-9, 21),
}


def histogram_overlap(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
    """Sum over bins of min(p, q) for the normalised histograms of a and b (values outside clip in)."""
    a = np.clip(a, bins[0], bins[-1])
    b = np.clip(b, bins[0], bins[-1])
    p = np.histogram(a, bins)[0].astype(float)
    q = np.histogram(b, bins)[0].astype(float)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def feature_overlap(samples: np.ndarray, data: np.ndarray) -> dict[str, float]:
    fs, fd = features(samples), features(data)
    out = {name: histogram_overlap(fs[name], fd[name], FEATURE_BINS[name]) for name in FEATURE_BINS}
    out["mean"] = float(np.mean(list(out.values())))
    return out


def evaluate(
    model: MelodyVAE,
    heldout: np.ndarray,
    num_samples: int = 1024,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    realism=None,
) -> dict:
    """Everything above in one dict (what the model card reports). ``realism``: the model's realism
    actor (z -> z'); then ``feature_overlap_realism`` holds the overlap of the same prior samples
    moved by it."""
    torch.manual_seed(seed)
    result = reconstruction_metrics(model, heldout, batch_size)
    gen = torch.Generator().manual_seed(seed)
    samples = model.sample(num_samples, temperature, gen, batch_size).numpy()
    result["prior_samples"] = num_samples
    result["temperature"] = temperature
    result["feature_overlap"] = feature_overlap(samples, heldout)
    if realism is not None:
        gen = torch.Generator().manual_seed(seed)
        moved = model.sample(num_samples, temperature, gen, batch_size, move=realism).numpy()
        result["feature_overlap_realism"] = feature_overlap(moved, heldout)
    return result
