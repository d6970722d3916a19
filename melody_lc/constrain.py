"""Where melody, rules and engine meet: fit a rules file to a VAE, generate, transform.

    fitted = fit_rules(rules, model)                        # zero-shot; cached by (rules, model, config)
    tokens, report = generate(rules, model, n=16, fitted=fitted, method="actor")
    new, report = transform(melody_tokens, rules, model, fitted=fitted)

The CLI, the terminal UI and the live engine all call these; none re-implements them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from melody_lc import checkpoint
from melody_lc.engine import Actor, CriticEnsemble, FitConfig, LatentProblem, fit, gradient_search, latent_spread
from melody_lc.errors import UserError
from melody_lc.melody.model import HierarchicalMelodyVAE
from melody_lc.melody.train import use_bf16
from melody_lc.rules import RuleSet

FIT_KIND = "melody-lc-actor"


def model_fingerprint(model: HierarchicalMelodyVAE) -> str:
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for k, v in sorted(model.state_dict().items()):  # every weight's exact bytes: the same whatever the
        h.update(k.encode())  # thread count (a float sum was not)
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def posterior_stats(model: HierarchicalMelodyVAE, windows: np.ndarray, limit: int = 2048, seed: int = 0):
    """(sigma_bar (Z,), encodings (M, Z)): the mean posterior scale per dimension, and posterior
    means of real data for the realism critic."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(windows))[:limit]
    mus, sigmas = [], []
    for i in range(0, len(idx), 256):
        mu, sigma = model.encode(torch.from_numpy(windows[idx[i : i + 256]].astype(np.int64)))
        mus.append(mu)
        sigmas.append(sigma)
    return torch.cat(sigmas).mean(0), torch.cat(mus)


FIT_STATS = "fit-stats"  # beside a model's weights: what a fit takes from the training data


def save_fit_stats(model_dir: str | os.PathLike, model: HierarchicalMelodyVAE, windows: np.ndarray, data: str) -> None:
    """Store what a fit takes from the training data (the mean posterior scale per dimension and
    posterior means of real melodies) beside the model, so that a new rules file fits without
    the dataset."""
    from melody_lc.fileio import write_json

    sigma_bar, real = posterior_stats(model, windows)
    d = Path(model_dir)
    checkpoint.save_tensors(d / f"{FIT_STATS}.safetensors", {"sigma_bar": sigma_bar, "real": real})
    write_json(d / f"{FIT_STATS}.json", {"model": model_fingerprint(model), "encodings": len(real), "data": data})


def load_fit_stats(
    model_dir: str | os.PathLike, model: HierarchicalMelodyVAE
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(sigma_bar, real encodings) stored beside ``model``, or None (none there, or made for other weights)."""
    from safetensors.torch import load_file

    d = Path(model_dir)
    try:
        info = json.loads((d / f"{FIT_STATS}.json").read_text())
        if info.get("model") != model_fingerprint(model):
            return None
        t = load_file(str(d / f"{FIT_STATS}.safetensors"))
        return t["sigma_bar"].float(), t["real"].float()
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class Fitted:
    actor: Actor
    critic: CriticEnsemble
    sigma_bar: torch.Tensor
    meta: dict


FIT_TEMPERATURE = 0.5  # melodies are decoded at this temperature while fitting (and by default when generating)
RELABELS = 8  # rules with open parameters: each scored prior melody is scored under this many values


MASK_SCALE = 2.0  # fitting: the interventions at which a rule's reward has fallen to 1/e
FIT_SCORING = "interventions-1"  # what fits learn from (see fit_scores); part of every fit's key


def fit_scores(rules: RuleSet, checked: Checked, cond) -> tuple[np.ndarray, np.ndarray]:
    """What a fit learns from melodies decoded under the rules' constraints: per rule, how little
    the mask had to overrule the decoder, exp(-interventions / MASK_SCALE) (a graded signal for any
    rule, also one that prior samples almost never satisfy by themselves), times the rule's own
    reward where the melody still fails it (a dead end); a rule kept by verification alone gives
    its own reward. Satisfied: the decoder wrote the rule by itself (no intervention) and the exact
    test passes, which is what the actor alone would deliver. (Rules without open parameters only:
    see ``fit_rules``.)"""
    rewards = rules.rewards(checked.tokens, cond)
    masked = np.array([name not in rules.verified_only for name in rules.names], bool)
    mask_reward = np.exp(-checked.by_rule / MASK_SCALE) * np.where(checked.failed, rewards, 1.0)
    rewards = np.where(masked[None, :], mask_reward, rewards)
    return rewards, ~checked.failed & ~((checked.by_rule > 0) & masked[None, :])


def fit_key(rules: RuleSet, model: HierarchicalMelodyVAE, config: FitConfig, temperature: float) -> str:
    """What a fit depends on: the rules' meaning, the model's weights, the fit settings."""
    parts = [rules.digest(), model_fingerprint(model), asdict(config), temperature, FIT_SCORING]
    if rules.open:
        parts.append({"relabels": RELABELS})
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def shipped_fits_dir() -> Path:
    from melody_lc.paths import shipped_dir

    return shipped_dir("models") / "fits"


def fit_rules(
    rules: RuleSet,
    model: HierarchicalMelodyVAE,
    windows,
    config: FitConfig = FitConfig(),
    temperature: float = FIT_TEMPERATURE,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[dict], None] | None = None,
    search: tuple = (),
) -> Fitted:
    """Zero-shot fit of a reward critic, a realism critic and an actor for ``rules``.

    ``windows``: training windows (N, 256) for the encoder statistics, or a function returning
    them (called only when a fit is needed), or the statistics themselves, (sigma_bar, encodings)
    as from :func:`load_fit_stats`. With ``cache_dir``, the result is stored under a key
    of (rules meaning, model, config, temperature); a later call loads it from there or from one of
    the ``search`` folders (the fits shipped in ``models/fits``) at once.
    """
    found = cached_fit(rules, model, [cache_dir] if cache_dir is not None else [], config, temperature, search)
    if found is not None:
        return found
    path = Path(cache_dir) / f"fit-{fit_key(rules, model, config, temperature)}" if cache_dir is not None else None
    if callable(windows):
        windows = windows()
    sigma_bar, real = windows if isinstance(windows, tuple) else posterior_stats(model, windows)

    def sample_condition(n, g):
        values = rules.sample_conditions(n, np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=g))))
        return torch.from_numpy(rules.condition_vector(values)) if rules.open else torch.zeros(n, 0)

    def score(z, c, extra=()):
        cond = rules.conditions_from_vector(c.numpy()) if rules.open else None
        # Rules with open parameters score the decoder's own melodies: relabelled under other values,
        # a melody masked into one key would say nothing about which key the decoder writes by itself.
        checked = decode_checked(rules, model, z, cond, temperature, score_gen, mask=not rules.open)
        scored = (
            fit_scores(rules, checked, cond)
            if not rules.open
            else (rules.rewards(checked.tokens, cond), ~checked.failed)
        )
        tokens = checked.tokens
        if not extra:
            return scored
        more = []
        for e in extra:  # the same melodies under other values of the open parameters, by the rules' own rewards
            t, ce = tokens[: len(e)], rules.conditions_from_vector(e.numpy())
            more.append((rules.rewards(t, ce), rules.satisfied(t, ce)))
        return (*scored, more)

    score_gen = torch.Generator().manual_seed(config.seed + 7)
    problem = LatentProblem(
        sample_prior=lambda n, g: torch.randn(n, model.config.z_size, generator=g),
        sample_condition=sample_condition,
        score=score,
        sigma_bar=sigma_bar,
        num_constraints=len(rules),
        cond_size=rules.condition_size,
        real_latents=real,
        weights=torch.tensor(rules.weights, dtype=torch.float32),
        relabels=RELABELS if rules.open else 1,
    )
    t0 = time.perf_counter()
    result = fit(problem, config, progress)
    meta = {
        "rules": rules.source,
        "rules_digest": rules.digest(),
        "model": model_fingerprint(model),
        "fit_config": asdict(config),
        "temperature": temperature,
        "best_round": result.best_round,
        "satisfaction": result.best_satisfaction,
        "seconds": round(time.perf_counter() - t0, 1),
        "history": result.history,
        "z_size": model.config.z_size,
        "cond_size": rules.condition_size,
        "num_constraints": len(rules),
    }
    fitted = Fitted(result.actor, result.critic, sigma_bar, meta)
    if path is not None:
        save_fitted(fitted, path)
    return fitted


def cached_fit(
    rules: RuleSet,
    model: HierarchicalMelodyVAE,
    folders=(),
    config: FitConfig = FitConfig(),
    temperature: float = FIT_TEMPERATURE,
    search: tuple = (),
) -> Fitted | None:
    """The fit of ``rules`` already stored in one of ``folders`` (then ``search``), or None: tells
    at once whether ``fit_rules`` would have to fit."""
    key = fit_key(rules, model, config, temperature)
    for folder in [*folders, *search]:
        if checkpoint.exists(Path(folder) / f"fit-{key}"):
            return load_fitted(Path(folder) / f"fit-{key}")
    return None


def save_fitted(f: Fitted, path: str | os.PathLike) -> None:
    weights = {f"actor.{k}": v for k, v in f.actor.state_dict().items()}
    weights.update({f"critic.{k}": v for k, v in f.critic.state_dict().items()})
    weights["sigma_bar"] = f.sigma_bar
    cfg = f.meta["fit_config"]
    checkpoint.save(
        path,
        FIT_KIND,
        {
            "hidden": cfg["hidden"],
            "layers": cfg["layers"],
            "z_size": f.meta["z_size"],
            "cond_size": f.meta["cond_size"],
            "num_constraints": f.meta["num_constraints"],
            "ensemble": cfg["ensemble"],
            "pessimism": cfg["pessimism"],
            "actor_hidden": cfg["actor_hidden"],
            "actor_max_step": cfg.get("actor_max_step"),
        },
        weights,
        meta=f.meta,
        dtype=torch.float16,
    )  # half the size; the nets run in float32


def load_fitted(path: str | os.PathLike) -> Fitted:
    ck = checkpoint.load(path, FIT_KIND)
    c, w = ck["config"], ck["weights"]
    actor = Actor(c["z_size"], c["cond_size"], c["actor_hidden"], c["layers"], c.get("actor_max_step"))
    critic = CriticEnsemble(
        c["z_size"], c["num_constraints"], c["cond_size"], c["hidden"], c["layers"], c["ensemble"], c["pessimism"]
    )
    actor.load_state_dict({k[6:]: v for k, v in w.items() if k.startswith("actor.")})
    critic.load_state_dict({k[7:]: v for k, v in w.items() if k.startswith("critic.")})
    return Fitted(actor.eval(), critic.eval(), w["sigma_bar"].float(), ck["meta"])


# --------------------------------------------------------------------------------------------------
# Enforcement: decode under the rules' constraints, verify by the exact tests, redraw what fails
# --------------------------------------------------------------------------------------------------
REDRAW_BUDGET = 32  # generate: at most this many decodes per requested melody (and at least 64 in all)
DECODE_BATCH = 1024  # rows decoded at once: a steered decode gains per melody from large batches


class Infeasible(UserError):
    """The rules allowed no melody at all: every draw hit a dead end (constraints allowing nothing)."""


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
    model: HierarchicalMelodyVAE,
    z: torch.Tensor,
    cond,
    temperature: float,
    generator: torch.Generator | None,
    mask: bool = True,
) -> Checked:
    """Decode z (N, Z) under the rules' decode-time constraints (``mask``) and check every melody
    by the exact tests. Without ``mask``: the decoder's own output, checked."""
    bf16 = use_bf16("auto", z.device)
    parts = []
    for a in range(0, len(z), DECODE_BATCH):
        b = min(a + DECODE_BATCH, len(z))
        steer = rules.steer(_slice(cond, a, b), b - a) if mask else None
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


def _propose(method: str, z: torch.Tensor, cvec: torch.Tensor, fitted: Fitted | None) -> torch.Tensor:
    """The latents to decode for prior latents z: moved by the actor, by gradient search, or not."""
    if method == "actor":
        with torch.no_grad():
            return fitted.actor(z, cvec)
    if method == "gd":
        return gradient_search(z, fitted.critic, fitted.sigma_bar, cvec)[0]
    return z  # "reject": the prior's own latents


METHODS = ("actor", "gd", "reject")


def generate(
    rules: RuleSet,
    model: HierarchicalMelodyVAE,
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
    if enforce and not len(tokens) and drawn and all(b for c in drawn for b in c.blocked_by):
        blocked = {"+".join(b) for c in drawn for b in c.blocked_by}
        raise Infeasible(
            f"{rules.path}: the rules allow no melody: all {sum(len(c.tokens) for c in drawn)} draws reached "
            f"a step where {' / '.join(sorted(blocked))} together allow nothing"
        )
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
    """The steps where two melodies differ: [{"step", "bar", "before", "after"}] (token classes)."""
    return [
        {"step": int(i), "bar": int(i) // 16 + 1, "before": int(before[i]), "after": int(after[i])}
        for i in np.flatnonzero(np.asarray(before) != np.asarray(after))
    ]


TRANSFORM_REDRAWS = 16  # transform: sampled decodes near the searched latent when the greedy one fails


def transform(
    tokens: np.ndarray,
    rules: RuleSet,
    model: HierarchicalMelodyVAE,
    fitted: Fitted,
    values: dict | None = None,
    lambda_dist: float = 0.1,
    steps: int = 300,
    enforce: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """The identity-preserving transformation: encode, gradient search on the critic with the
    distance penalty, decode (greedy, so the result stays close to the input) under the rules'
    constraints, and verify. A melody that already obeys every rule comes back as it is. One whose
    greedy decode fails is decoded again, sampled at the fit temperature near the searched latent,
    until a decode passes (at most ``TRANSFORM_REDRAWS`` times); ``report["all_rules"]`` is below 1
    when a melody none of whose decodes passed is handed back (then marked by the exact tests)."""
    t = np.atleast_2d(tokens).astype(np.int64)
    n = len(t)
    cond = rules.fixed_conditions(n, **values) if rules.open else None
    cvec = torch.from_numpy(rules.condition_vector(cond)) if cond else torch.zeros(n, 0)
    t0 = time.perf_counter()
    before = rules.satisfied(t, cond).all(1)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(t))
    z2, done, _ = gradient_search(mu, fitted.critic, fitted.sigma_bar, cvec, lambda_dist=lambda_dist, steps=steps)
    checked = decode_checked(rules, model, z2, cond, 0.0, None, enforce)
    out, interventions = checked.tokens.copy(), checked.interventions.copy()
    if enforce:
        out[before], interventions[before], z2[torch.from_numpy(before)] = t[before], 0, mu[torch.from_numpy(before)]
        ok = checked.ok | before
        g = torch.Generator().manual_seed(seed)
        for _ in range(TRANSFORM_REDRAWS if not ok.all() else 0):
            rows = np.flatnonzero(~ok)
            if not len(rows):
                break
            c = {k: v[rows] for k, v in cond.items()} if cond else None
            zr = z2[torch.from_numpy(rows)] + 0.1 * fitted.sigma_bar * torch.randn(len(rows), z2.shape[1], generator=g)
            again = decode_checked(rules, model, zr, c, FIT_TEMPERATURE, g, True)
            for j, row in enumerate(rows):
                if again.ok[j]:
                    out[row], interventions[row], ok[row] = again.tokens[j], again.interventions[j], True
    report = _summary(rules, out, cond, (z2 - mu).norm(dim=-1).numpy(), "transform", time.perf_counter() - t0)
    report["enforced"] = enforce
    report["before"] = _summary(rules, t, cond, np.zeros(n), "input", 0.0)["rules"]
    report["steps_changed"] = float((out != t).mean())
    report["changed"] = [changed_notes(a, b) for a, b in zip(t, out)]
    report["unchanged_because_obeyed"] = (before & enforce).tolist()
    report["critic_satisfied"] = float(done.float().mean())
    report["interventions_per_melody"] = float(interventions.mean())
    return out, report
