"""Teach by example: ``like: my_tunes/`` and ``unlike: that_tune.mid``.

    like: my_tunes/            # a folder of .mid files, or one file (relative to the rules file)
    unlike: cliche.mid         # the reverse

The examples are read once, as 16-bar windows (a tune shorter than 16 bars is padded with
silence). Closeness is measured where the model itself places melodies: the encoder's posterior
mean mu(x). The distance of a melody to the examples is the root-mean-square, over latent
dimensions, of mu(x) - mu(e) for the nearest example window e; the threshold tau is the median of
that distance over the model's own prior melodies (256, seeded). The exact test of ``like:``:
distance <= tau, nearer the examples than half of what the model writes unprompted; of
``unlike:``: distance >= tau. Both need the model, which the commands that decode bind to the
rules (:func:`bind_examples`), and have no decode-time constraint: they are kept by verification.

Fitting gives the actor, besides the reward critic of the exact test, the realism critic's
machinery on the examples: a critic learns the examples' posteriors q(z|e) against prior latents,
and the actor moves toward (``like``) or away from (``unlike``) what it says
(melody_lc.engine.fit, ``LatentProblem.examples``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from melody_lc.errors import UserError
from melody_lc.melody.encoding import HOLD, NUM_BARS, REST, STEPS, canonical
from melody_lc.rules.base import RuleKind

PRIOR_SAMPLES = 256  # prior melodies that set the threshold tau
MIDI_SUFFIXES = (".mid", ".midi")


class ExampleSet:
    """A composer's example windows; once bound to a model, their posteriors and the threshold.
    Its repr is its digest, which is what a fit's cache key sees."""

    def __init__(self, source: str, tokens: np.ndarray) -> None:
        self.source, self.tokens = source, tokens
        self.digest = hashlib.sha256(tokens.tobytes()).hexdigest()[:16]
        self.model = None
        self.mu = self.sigma = None  # (M, Z) posterior of each window
        self.tau = None
        self.prior: dict = {}  # the model's own melodies: mean distance and feature overlap
        self._last: tuple | None = None  # (tokens, distances) of the last call

    def __repr__(self) -> str:
        return f"ExampleSet({self.digest})"

    @torch.inference_mode()
    def bind(self, model) -> None:
        if self.model is model:
            return
        mu, sigma = model.encode(torch.from_numpy(self.tokens.astype(np.int64)))
        self.mu, self.sigma, self._last = mu.float(), sigma.float(), None
        g = torch.Generator().manual_seed(0)
        prior = model.decode(torch.randn(PRIOR_SAMPLES, model.config.z_size, generator=g), 0.5, g).numpy()
        self.model = model
        d = self.distance(prior)
        self.tau = float(np.median(d))
        self.prior = {"mean_distance": float(d.mean()), "feature_overlap": self.overlap(prior)}

    def overlap(self, tokens: np.ndarray) -> float:
        """Mean feature overlap of melodies with the example windows (melody_lc.melody.evaluate)."""
        from melody_lc.melody.evaluate import feature_overlap

        return feature_overlap(np.asarray(tokens), self.tokens)["mean"]

    def closeness(self, tokens: np.ndarray) -> dict:
        """How near melodies are to the examples, beside the model's own melodies (for reports)."""
        return {
            "mean_distance": float(self.distance(tokens).mean()),
            "feature_overlap": self.overlap(tokens),
            "threshold": self.tau,
            "model_own": self.prior,
        }

    @torch.inference_mode()
    def distance(self, tokens: np.ndarray) -> np.ndarray:
        """(N,) RMS latent distance of each melody's posterior mean to the nearest example window."""
        if self.model is None:
            raise UserError(f"like/unlike ({self.source}): the rules must be bound to a model to be checked")
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if len(tokens) == 0:  # no melody (none delivered): nothing to encode
            return np.zeros(0)
        key = tokens.tobytes()
        if self._last is not None and self._last[0] == key:  # rewards and exact test of one batch: one encode
            return self._last[1]
        mu, _ = self.model.encode(torch.from_numpy(tokens))
        d = (torch.cdist(mu.float(), self.mu) / self.mu.shape[1] ** 0.5).min(1).values.numpy()
        self._last = (key, d)
        return d


def read_examples(path: Path) -> np.ndarray:
    """(M, 256) canonical windows of the .mid files at ``path`` (a folder or one file); raises
    ValueError with a message for the rules file's error."""
    from melody_lc.melody.extract import extract_windows, quantized_notes
    from melody_lc.melody.sources import read_midi_file

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in MIDI_SUFFIXES)
        if not files:
            raise ValueError(f"no .mid files in the folder {path}")
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"no such file or folder: {path}")
    windows = []
    for f in files:
        try:
            piece = read_midi_file(f)
            found = extract_windows(piece, f.name).windows
            if not len(found):  # shorter than 16 bars (or sparse): the tune itself, padded with silence
                found = _padded(quantized_notes(piece))
        except Exception as e:  # noqa: BLE001 - any reader's failure is the file's problem
            raise ValueError(f"cannot read {f} as a melody: {e}") from None
        windows.append(found)
    return np.unique(np.concatenate(windows), axis=0)


def _padded(notes) -> np.ndarray:
    """The first 16 bars of a tune's notes as one window, silence after its end."""
    notes = notes[~notes["is_drum"]]
    if not len(notes):
        raise ValueError("no notes (drums are ignored)")
    t = np.full(STEPS, REST, np.int64)
    for n in np.sort(notes, order="start"):  # a later note cuts the one before it (a melody is one line)
        s, e = int(n["start"]), min(int(n["end"]), STEPS)
        if s < STEPS and e > s:
            t[s], t[s + 1 : e] = int(n["pitch"]), HOLD
    return canonical(t[None])


class Like(RuleKind):
    name = "like"
    summary = "melodies like your own examples: 'like: my_tunes/' (a folder of .mid files, or one file)"
    scale = 0.1  # a tenth of the threshold beyond it: reward 1/e
    sign = 1
    whole_only = "compares whole melodies"

    def parse(self, cur) -> dict:
        text = cur.text.strip()
        if not text:
            cur.fail("expected a folder of .mid files or a .mid file, found the end of the line")
        column = cur.tokens[0].column if cur.tokens else None
        cur.i = len(cur.tokens)
        base = Path(cur.path).parent if cur.path and not cur.path.startswith("<") else Path.cwd()
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            tokens = read_examples(path)
        except ValueError as e:
            cur.fail(str(e), column)
        return {"examples": ExampleSet(text, tokens)}

    def describe(self, params: dict) -> str:
        ex = params["examples"]
        where = "nearer to" if self.sign > 0 else "farther from"
        return (
            f"{where} the {len(ex.tokens)} example window{'s' if len(ex.tokens) != 1 else ''} of {ex.source} "
            "(in the model's latent space) than half the model's own melodies"
        )

    def violation(self, tokens, params, cond):
        ex = params["examples"]
        if tokens.shape[1] != STEPS:
            raise UserError(f"{self.name}: compares whole {NUM_BARS}-bar melodies")
        d = ex.distance(tokens)
        return np.maximum(0.0, self.sign * (d - ex.tau)) / ex.tau


class Unlike(Like):
    name = "unlike"
    summary = "melodies unlike the examples: 'unlike: cliche.mid' (a folder of .mid files, or one file)"
    sign = -1


KINDS: tuple[RuleKind, ...] = (Like(), Unlike())


def example_rules(rules) -> list:
    """The like/unlike rules of a RuleSet."""
    return [r for r in rules.rules if isinstance(r.kind, Like)]


def bind_examples(rules, model) -> None:
    """Lets the like/unlike rules of ``rules`` be checked with ``model`` (encodes the examples and
    sets the threshold once per model)."""
    for r in example_rules(rules):
        r.params["examples"].bind(model)


def closeness_report(rules, tokens: np.ndarray) -> dict:
    """For each like/unlike rule, by name: :meth:`ExampleSet.closeness` of ``tokens``."""
    return {
        name: r.params["examples"].closeness(tokens)
        for name, r in zip(rules.names, rules.rules)
        if isinstance(r.kind, Like) and len(tokens)
    }


def closeness_lines(report: dict) -> list[str]:
    """The report's closeness to the examples, in words (one line per like/unlike rule)."""
    return [
        f"{name}: mean latent distance to the examples {c['mean_distance']:.3f} (the model's own melodies: "
        f"{c['model_own']['mean_distance']:.3f}; the rule's threshold {c['threshold']:.3f}), feature overlap "
        f"with them {c['feature_overlap']:.3f} ({c['model_own']['feature_overlap']:.3f})"
        for name, c in report.get("examples", {}).items()
    ]
