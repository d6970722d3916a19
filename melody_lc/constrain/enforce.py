"""Enforcement: decode under the rules' constraints, verify by the exact tests, redraw what fails;
``generate`` and ``transform`` on top (every melody they hand over obeys every rule, or they say
what they could not find)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from melody_lc.choices import METHODS
from melody_lc.engine import gradient_search, latent_spread
from melody_lc.errors import UserError
from melody_lc.melody.encoding import BAR_STEPS, NUM_PITCHES
from melody_lc.melody.hardware import use_bf16
from melody_lc.melody.model import MelodyVAE
from melody_lc.melody.steer import Steer
from melody_lc.rules import RuleSet
from melody_lc.rules.examples import bind_examples, closeness_report

if TYPE_CHECKING:
    from melody_lc.constrain.fitting import Fitted

FIT_TEMPERATURE = 0.5  # melodies are decoded at this temperature while fitting (and by default when generating)
REDRAW_BUDGET = 32  # generate: at most this many decodes per requested melody (and at least 64 in all)
DECODE_BATCH = 1024  # rows decoded at once: a steered decode gains per melody from large batches
FEASIBILITY_DRAWS = 256  # prior melodies decoded under the masks before a fit (check_feasible)


class Infeasible(UserError):
    """The rules allowed no melody at all: every draw hit a dead end (constraints allowing nothing)."""


def _raise_if_infeasible(rules: RuleSet, drawn: list[Checked]) -> None:
    """:class:`Infeasible` when no draw obeyed the rules and every one reached a dead end."""
    if not drawn or any(c.ok.any() for c in drawn) or not all(b for c in drawn for b in c.blocked_by):
        return
    blocked = {"+".join(b) for c in drawn for b in c.blocked_by}
    raise Infeasible(
        f"{rules.path}: the rules allow no melody: all {sum(len(c.tokens) for c in drawn)} draws reached "
        f"a step where {' / '.join(sorted(blocked))} together allow nothing"
    )


@dataclass
class Checked:
    """Decoded melodies with what enforcement found: tokens (N, 256), ok (N,) every rule's exact
    test, failed (N, R) per rule, and per melody the mask's interventions, removed probability mass
    and the rules of a dead end (None where there was none)."""

    tokens: np.ndarray
    ok: np.ndarray
    failed: np.ndarray
    interventions: np.ndarray
    mass_removed: np.ndarray
    blocked_by: list
    by_rule: np.ndarray  # (N, R) interventions of each rule's mask

    def subset(self, idx: np.ndarray) -> Checked:
        return Checked(
            self.tokens[idx],
            self.ok[idx],
            self.failed[idx],
            self.interventions[idx],
            self.mass_removed[idx],
            [self.blocked_by[i] for i in idx],
            self.by_rule[idx],
        )


def _slice(cond, a: int, b: int):
    return {k: v[a:b] for k, v in cond.items()} if cond else None


def decode_checked(
    rules: RuleSet,
    model: MelodyVAE,
    z: torch.Tensor,
    cond,
    temperature: float,
    generator: torch.Generator | None,
    mask: bool = True,
    prefer: np.ndarray | None = None,
    keep: float = 0.0,
    share_bars: bool = True,
) -> Checked:
    """Decode z (N, Z) under the rules' decode-time constraints (``mask``) and check every melody
    by the exact tests. Without ``mask``: the decoder's own output, checked. ``prefer`` (N, 256):
    tokens the decode keeps wherever the rules allow, ``keep`` logits in their favour (transform).
    ``share_bars``: a form's repeated bars are decoded from their first statement's embeddings,
    with or without the mask (the decoder's own way to repeat)."""
    bind_examples(rules, model)  # like:/unlike: are checked with the model's encoder
    bf16 = use_bf16("auto", z.device)
    parts = []
    for a in range(0, len(z), DECODE_BATCH):
        b = min(a + DECODE_BATCH, len(z))
        if mask:
            steer = rules.steer(_slice(cond, a, b), b - a, share_bars)
        else:
            steer = Steer([], bar_source=rules.bar_source() if share_bars else None)
        if prefer is not None and keep > 0:
            steer.prefer, steer.keep = torch.from_numpy(np.asarray(prefer[a:b], dtype=np.int64)), keep
        tokens = model.decode(z[a:b], temperature, generator, bf16, steer=steer or None).numpy()
        st = steer.stats if steer else None
        zeros = np.zeros(b - a)
        parts.append(
            (
                tokens,
                st.interventions.numpy() if st else zeros,
                st.mass_removed.numpy() if st else zeros,
                st.blocked_by if st else [None] * (b - a),
                np.stack([st.by_rule[nm].numpy() if nm in st.by_rule else zeros for nm in rules.names], 1)
                if st
                else np.zeros((b - a, len(rules))),
            )
        )
    tokens = np.concatenate([p[0] for p in parts])
    sat = rules.satisfied(tokens, cond)
    return Checked(
        tokens,
        sat.all(1),
        ~sat,
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        [b for p in parts for b in p[3]],
        np.concatenate([p[4] for p in parts]),
    )


def _summary(rules: RuleSet, tokens: np.ndarray, cond, shift: np.ndarray, method: str, seconds: float) -> dict:
    sat = rules.satisfied(tokens, cond)
    rew = rules.rewards(tokens, cond)
    per_rule = {
        name: {
            "satisfied": float(sat[:, i].mean()) if len(tokens) else 0.0,
            "mean_reward": float(rew[:, i].mean()) if len(tokens) else 0.0,
        }
        for i, name in enumerate(rules.names)
    }
    return {
        "method": method,
        "melodies": int(len(tokens)),
        "all_rules": float(sat.all(1).mean()) if len(tokens) else 0.0,
        "mean_reward": float(rules.reward(tokens, cond).mean()) if len(tokens) else 0.0,
        "mean_latent_shift": float(shift.mean()) if len(shift) else 0.0,
        "seconds": round(seconds, 3),
        "rules": per_rule,
        **({"examples": ex} if (ex := closeness_report(rules, tokens)) else {}),
    }


def _enforcement_report(
    report: dict, rules: RuleSet, kept: list[Checked], drawn: list[Checked], requested: int
) -> None:
    """Adds to ``report``: what was delivered and missing, decodes, interventions, redraws per rule."""

    def cat(name, items):
        return np.concatenate([getattr(c, name) for c in items]) if items else np.zeros(0)

    delivered, decodes = report["melodies"], sum(len(c.tokens) for c in drawn)
    failed = np.concatenate([c.failed for c in drawn]) if drawn else np.zeros((0, len(rules)), bool)
    by_rule = np.concatenate([c.by_rule for c in kept]) if kept else np.zeros((0, len(rules)))
    blocked = {}
    for c in drawn:
        for b in c.blocked_by:
            if b:
                blocked["+".join(b)] = blocked.get("+".join(b), 0) + 1
    report.update(
        {
            "requested": requested,
            "missing": requested - delivered,
            "decodes": decodes,
            "decodes_per_melody": round(decodes / delivered, 3) if delivered else None,
            "interventions_per_melody": float(cat("interventions", kept).mean()) if delivered else 0.0,
            "mass_removed_per_melody": float(cat("mass_removed", kept).mean()) if delivered else 0.0,
            "dead_ends": int(sum(blocked.values())),
            "blocked_by": blocked,
            "verified_only": rules.verified_only,
        }
    )
    for i, name in enumerate(rules.names):
        report["rules"][name].update(
            {"interventions": float(by_rule[:, i].mean()) if delivered else 0.0, "redrawn": int(failed[:, i].sum())}
        )


def conditions(rules: RuleSet, n: int, values: dict | None = None, rng: np.random.Generator | None = None):
    """(cond, cvec): the open parameters' values for n melodies (given ``values``, else drawn with
    ``rng``) and their condition vector (n, C); (None, an (n, 0) tensor) for rules with none open."""
    if not rules.open:
        return None, torch.zeros(n, 0)
    cond = rules.fixed_conditions(n, **values) if values else rules.sample_conditions(n, rng or np.random.default_rng())
    return cond, torch.from_numpy(rules.condition_vector(cond)).float()


def check_feasible(rules: RuleSet, model: MelodyVAE, temperature: float = FIT_TEMPERATURE) -> Checked:
    """FEASIBILITY_DRAWS prior melodies decoded under the rules' masks and checked (before a fit,
    which takes minutes, and by ``rules check``); :class:`Infeasible` when every one reached a dead
    end, so that rules no melody can satisfy, which the file alone does not always show, are said
    at once. Returns the checked melodies."""
    g = torch.Generator().manual_seed(0)
    cond, _ = conditions(rules, FEASIBILITY_DRAWS, None, np.random.default_rng(0))
    z = torch.randn(FEASIBILITY_DRAWS, model.config.z_size, generator=g)
    checked = decode_checked(rules, model, z, cond, temperature, g)
    _raise_if_infeasible(rules, [checked])
    return checked


def _propose(method: str, z: torch.Tensor, cvec: torch.Tensor, fitted: Fitted | None) -> torch.Tensor:
    """The latents to decode for prior latents z: moved by the actor, by gradient search, or not."""
    if method == "actor":
        with torch.no_grad():
            return fitted.actor(z, cvec)
    if method == "gd":
        return gradient_search(z, fitted.critic, fitted.sigma_bar, cvec)[0]
    return z  # "reject": the prior's own latents


def generate(
    rules: RuleSet,
    model: MelodyVAE,
    n: int,
    fitted: Fitted | None = None,
    method: str = "actor",
    seed: int = 0,
    temperature: float = 1.0,
    values: dict | None = None,
    enforce: bool = True,
    max_decodes: int | None = None,
    mask: bool = True,
) -> tuple[np.ndarray, dict]:
    """n melodies that obey ``rules``: prior latents moved by the actor (``method="actor"``), by
    gradient search on the critic (``"gd"``), or left as drawn (``"reject"``: rejection sampling
    from the prior), decoded under the rules' constraints and checked by their exact tests; a
    melody that fails is replaced by a fresh draw, until n pass or ``max_decodes`` decodes
    (default ``REDRAW_BUDGET`` per melody) are spent. Fewer than n may come back:
    ``report["missing"]`` says how many and ``report["rules"][name]["redrawn"]`` which rules failed
    how often. Raises :class:`Infeasible` when every draw hit a dead end and none passed.

    ``enforce=False`` gives the raw output for comparison: one draw of n, no constraints, no
    redraws (``report["all_rules"]`` says how many obey). ``mask=False`` keeps verification and
    redraws but decodes without the constraints (with ``method="reject"``: plain rejection sampling).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    budget = max_decodes if max_decodes is not None else max(64, REDRAW_BUDGET * n)
    t0 = time.perf_counter()
    kept, drawn, zs, z2s, conds = [], [], [], [], []
    have = 0
    while have < n:
        pass_rate = (
            (sum(int(c.ok.sum()) for c in drawn) + 1) / (sum(len(c.tokens) for c in drawn) + 1) if drawn else 1.0
        )
        want = n - have
        size = min(max(want, int(np.ceil(want / max(pass_rate, 0.05)))), DECODE_BATCH) if enforce else want
        size = min(size, budget - sum(len(c.tokens) for c in drawn))
        if size <= 0:
            break
        cond, cvec = conditions(rules, size, values, rng)
        z = torch.randn(size, model.config.z_size, generator=g)
        z2 = _propose(method, z, cvec, fitted)
        checked = decode_checked(rules, model, z2, cond, temperature, g, enforce and mask)
        drawn.append(checked)
        take = (np.arange(size) if not enforce else np.flatnonzero(checked.ok))[:want]
        idx = torch.from_numpy(take)
        kept.append(checked.subset(take))
        zs.append(z[idx])
        z2s.append(z2[idx])
        conds.append({k: v[take] for k, v in cond.items()} if cond else None)
        have += len(take)
        if not enforce:
            break
    tokens = np.concatenate([c.tokens for c in kept]) if kept else np.zeros((0, 256), np.int64)
    cond = {k: np.concatenate([c[k] for c in conds]) for k in rules.open} if rules.open and conds else None
    z = torch.cat(zs) if zs else torch.zeros(0, model.config.z_size)
    z2 = torch.cat(z2s) if z2s else z
    if enforce:
        _raise_if_infeasible(rules, drawn)
    shift = (z2 - z).norm(dim=-1).numpy()
    report = _summary(rules, tokens, cond, shift, method, time.perf_counter() - t0)
    report["enforced"], report["masked"] = enforce, enforce and mask
    report["spread"] = latent_spread(z, z2) if len(z) > 2 else 1.0  # near 0: every melody from nearly one latent
    _enforcement_report(report, rules, kept, drawn, n)
    report["values"] = {k: v.tolist() for k, v in cond.items()} if cond else {}
    return tokens, report


def report_conditions(report: dict):
    """The open parameters' values of a generate report's melodies, as scoring takes them (or None)."""
    return {k: np.asarray(v) for k, v in report["values"].items()} if report.get("values") else None


def changed_notes(before: np.ndarray, after: np.ndarray) -> list[dict]:
    """The notes that differ, by onset: [{"step", "bar", "beat", "before", "after"}], each pitch a
    MIDI number or None (no note starts there); bar and beat count from 1, beat 2.5 is the "and"
    of beat 2. A note kept is one with the same onset and pitch (its length may differ)."""
    b, a = _onsets(before), _onsets(after)
    return [
        {"step": s, "bar": s // BAR_STEPS + 1, "beat": s % BAR_STEPS / 4 + 1, "before": b.get(s), "after": a.get(s)}
        for s in sorted(set(b) | set(a))
        if b.get(s) != a.get(s)
    ]


def notes_kept(before: np.ndarray, after: np.ndarray) -> float:
    """The share of ``before``'s notes that ``after`` has too, same onset and pitch (1.0 without notes)."""
    b, a = _onsets(before), _onsets(after)
    return sum(a.get(s) == p for s, p in b.items()) / len(b) if b else 1.0


def _onsets(tokens: np.ndarray) -> dict[int, int]:
    return {int(s): int(tokens[s]) for s in np.flatnonzero(np.asarray(tokens) < NUM_PITCHES)}


TRANSFORM_REDRAWS = 16  # transform: sampled decodes near the searched latent when the greedy one fails
KEEP = 8.0  # transform: logits in favour of the input's own token at each step (benchmarks/transform_identity.py)


def transform(
    tokens: np.ndarray,
    rules: RuleSet,
    model: MelodyVAE,
    fitted: Fitted,
    values: dict | None = None,
    lambda_dist: float = 0.1,
    steps: int = 300,
    enforce: bool = True,
    seed: int = 0,
    keep: float = KEEP,
) -> tuple[np.ndarray, dict]:
    """The identity-preserving transformation: encode, gradient search on the critic with the
    distance penalty, decode (greedy, so the result stays close to the input) under the rules'
    constraints, and verify. The decode remembers the input: its token at each step gets ``keep``
    logits in its favour, so what the rules allow stays as it was (0: the decoder alone). A melody
    that already obeys every rule comes back as it is. One whose decode fails is decoded greedily
    by the decoder alone, then sampled at the fit temperature near the searched latent, until a
    decode passes (at most ``TRANSFORM_REDRAWS`` times); ``report["all_rules"]`` is below 1 when a
    melody none of whose decodes passed is handed back (then marked by the exact tests)."""
    t = np.atleast_2d(tokens).astype(np.int64)
    n = len(t)
    cond = rules.fixed_conditions(n, **(values or {})) if rules.open else None
    cvec = torch.from_numpy(rules.condition_vector(cond)) if cond else torch.zeros(n, 0)
    t0 = time.perf_counter()
    before = rules.satisfied(t, cond).all(1)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(t))
    z2, done, _ = gradient_search(mu, fitted.critic, fitted.sigma_bar, cvec, lambda_dist=lambda_dist, steps=steps)
    checked = decode_checked(rules, model, z2, cond, 0.0, None, enforce, prefer=t, keep=keep)
    out, interventions = checked.tokens.copy(), checked.interventions.copy()
    if enforce:
        out[before], interventions[before], z2[torch.from_numpy(before)] = t[before], 0, mu[torch.from_numpy(before)]
        ok = checked.ok | before
        g = torch.Generator().manual_seed(seed)
        for attempt in range(1 + TRANSFORM_REDRAWS if not ok.all() else 0):
            rows = np.flatnonzero(~ok)
            if not len(rows):
                break
            c = {k: v[rows] for k, v in cond.items()} if cond else None
            if attempt == 0 and keep > 0:  # the decoder's own greedy line toward the rules
                again = decode_checked(rules, model, z2[torch.from_numpy(rows)], c, 0.0, None, True)
            else:
                zr = z2[torch.from_numpy(rows)] + 0.1 * fitted.sigma_bar * torch.randn(
                    len(rows), z2.shape[1], generator=g
                )
                again = decode_checked(rules, model, zr, c, FIT_TEMPERATURE, g, True)
            for j, row in enumerate(rows):
                if again.ok[j]:
                    out[row], interventions[row], ok[row] = again.tokens[j], again.interventions[j], True
    report = _summary(rules, out, cond, (z2 - mu).norm(dim=-1).numpy(), "transform", time.perf_counter() - t0)
    report["enforced"] = enforce
    report["before"] = _summary(rules, t, cond, np.zeros(n), "input", 0.0)["rules"]
    report["steps_changed"] = float((out != t).mean())
    report["changed"] = [changed_notes(a, b) for a, b in zip(t, out)]
    report["notes_kept"] = [notes_kept(a, b) for a, b in zip(t, out)]
    report["unchanged_because_obeyed"] = (before & enforce).tolist()
    report["critic_satisfied"] = float(done.float().mean())
    report["interventions_per_melody"] = float(interventions.mean())
    return out, report
