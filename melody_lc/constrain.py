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
from melody_lc.melody.model import HierarchicalMelodyVAE
from melody_lc.melody.train import use_bf16
from melody_lc.rules import RuleSet

FIT_KIND = "melody-lc-actor"


def model_fingerprint(model: HierarchicalMelodyVAE) -> str:
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for k, v in sorted(model.state_dict().items()):  # every weight's exact bytes: the same whatever the
        h.update(k.encode())                          # thread count (a float sum was not)
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


@dataclass
class Fitted:
    actor: Actor
    critic: CriticEnsemble
    sigma_bar: torch.Tensor
    meta: dict


def _decode(model, z, temperature, generator, batch: int = 512):
    bf16 = use_bf16("auto", z.device)
    return np.concatenate([model.decode(z[i : i + batch], temperature, generator, bf16).numpy()
                           for i in range(0, len(z), batch)])


FIT_TEMPERATURE = 0.5  # melodies are decoded at this temperature while fitting (and by default when generating)
RELABELS = 8  # rules with open parameters: each scored prior melody is scored under this many values


def fit_key(rules: RuleSet, model: HierarchicalMelodyVAE, config: FitConfig, temperature: float) -> str:
    """What a fit depends on: the rules' meaning, the model's weights, the fit settings."""
    parts = [rules.digest(), model_fingerprint(model), asdict(config), temperature]
    if rules.open:
        parts.append({"relabels": RELABELS})
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def shipped_fits_dir() -> Path:
    from melody_lc.paths import shipped_dir

    return shipped_dir("models") / "fits"


def fit_rules(rules: RuleSet, model: HierarchicalMelodyVAE, windows, config: FitConfig = FitConfig(),
              temperature: float = FIT_TEMPERATURE, cache_dir: str | os.PathLike | None = None,
              progress: Callable[[dict], None] | None = None, search: tuple = ()) -> Fitted:
    """Zero-shot fit of a reward critic, a realism critic and an actor for ``rules``.

    ``windows``: training windows (N, 256) for the encoder statistics, or a function returning
    them (called only when a fit is needed). With ``cache_dir``, the result is stored under a key
    of (rules meaning, model, config, temperature); a later call loads it from there or from one of
    the ``search`` folders (the fits shipped in ``models/fits``) at once.
    """
    found = cached_fit(rules, model, [cache_dir] if cache_dir is not None else [], config, temperature, search)
    if found is not None:
        return found
    path = Path(cache_dir) / f"fit-{fit_key(rules, model, config, temperature)}" if cache_dir is not None else None
    if callable(windows):
        windows = windows()
    sigma_bar, real = posterior_stats(model, windows)

    def sample_condition(n, g):
        values = rules.sample_conditions(n, np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=g))))
        return torch.from_numpy(rules.condition_vector(values)) if rules.open else torch.zeros(n, 0)

    def score(z, c, extra=()):
        tokens = _decode(model, z, temperature, score_gen)
        cond = rules.conditions_from_vector(c.numpy()) if rules.open else None
        scored = (rules.rewards(tokens, cond), rules.satisfied(tokens, cond))
        if not extra:
            return scored
        more = []
        for e in extra:  # the same melodies under other values of the open parameters
            t, ce = tokens[: len(e)], rules.conditions_from_vector(e.numpy())
            more.append((rules.rewards(t, ce), rules.satisfied(t, ce)))
        return (*scored, more)

    score_gen = torch.Generator().manual_seed(config.seed + 7)
    problem = LatentProblem(
        sample_prior=lambda n, g: torch.randn(n, model.config.z_size, generator=g),
        sample_condition=sample_condition, score=score, sigma_bar=sigma_bar,
        num_constraints=len(rules), cond_size=rules.condition_size, real_latents=real,
        weights=torch.tensor(rules.weights, dtype=torch.float32), relabels=RELABELS if rules.open else 1)
    t0 = time.perf_counter()
    result = fit(problem, config, progress)
    meta = {"rules": rules.source, "rules_digest": rules.digest(), "model": model_fingerprint(model),
            "fit_config": asdict(config), "temperature": temperature, "best_round": result.best_round,
            "satisfaction": result.best_satisfaction, "seconds": round(time.perf_counter() - t0, 1),
            "history": result.history, "z_size": model.config.z_size, "cond_size": rules.condition_size,
            "num_constraints": len(rules)}
    fitted = Fitted(result.actor, result.critic, sigma_bar, meta)
    if path is not None:
        save_fitted(fitted, path)
    return fitted


def cached_fit(rules: RuleSet, model: HierarchicalMelodyVAE, folders=(), config: FitConfig = FitConfig(),
               temperature: float = FIT_TEMPERATURE, search: tuple = ()) -> Fitted | None:
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
    checkpoint.save(path, FIT_KIND, {"hidden": cfg["hidden"], "layers": cfg["layers"], "z_size": f.meta["z_size"],
                                     "cond_size": f.meta["cond_size"], "num_constraints": f.meta["num_constraints"],
                                     "ensemble": cfg["ensemble"], "pessimism": cfg["pessimism"],
                                     "actor_hidden": cfg["actor_hidden"], "actor_max_step": cfg.get("actor_max_step")},
                    weights, meta=f.meta, dtype=torch.float16)  # half the size; the nets run in float32


def load_fitted(path: str | os.PathLike) -> Fitted:
    ck = checkpoint.load(path, FIT_KIND)
    c, w = ck["config"], ck["weights"]
    actor = Actor(c["z_size"], c["cond_size"], c["actor_hidden"], c["layers"], c.get("actor_max_step"))
    critic = CriticEnsemble(c["z_size"], c["num_constraints"], c["cond_size"], c["hidden"], c["layers"],
                            c["ensemble"], c["pessimism"])
    actor.load_state_dict({k[6:]: v for k, v in w.items() if k.startswith("actor.")})
    critic.load_state_dict({k[7:]: v for k, v in w.items() if k.startswith("critic.")})
    return Fitted(actor.eval(), critic.eval(), w["sigma_bar"].float(), ck["meta"])


# --------------------------------------------------------------------------------------------------
def _summary(rules: RuleSet, tokens: np.ndarray, cond, shift: np.ndarray, method: str, seconds: float) -> dict:
    sat = rules.satisfied(tokens, cond)
    rew = rules.rewards(tokens, cond)
    per_rule = {name: {"satisfied": float(sat[:, i].mean()), "mean_reward": float(rew[:, i].mean())}
                for i, name in enumerate(rules.names)}
    return {"method": method, "melodies": int(len(tokens)), "all_rules": float(sat.all(1).mean()),
            "mean_reward": float(rules.reward(tokens, cond).mean()), "mean_latent_shift": float(shift.mean()),
            "seconds": round(seconds, 3), "rules": per_rule}


def conditions(rules: RuleSet, n: int, values: dict | None = None, rng: np.random.Generator | None = None):
    """(cond, cvec): the open parameters' values for n melodies (given ``values``, else drawn with
    ``rng``) and their condition vector (n, C); (None, an (n, 0) tensor) for rules with none open."""
    if not rules.open:
        return None, torch.zeros(n, 0)
    cond = rules.fixed_conditions(n, **values) if values else rules.sample_conditions(n, rng or np.random.default_rng())
    return cond, torch.from_numpy(rules.condition_vector(cond)).float()


def generate(rules: RuleSet, model: HierarchicalMelodyVAE, n: int, fitted: Fitted | None = None, method: str = "actor",
             seed: int = 0, temperature: float = 1.0, values: dict | None = None,
             max_tries: int = 64) -> tuple[np.ndarray, dict]:
    """n melodies meant to satisfy ``rules``: through the actor, by gradient search on the critic,
    or by rejection sampling from the prior (keep sampling until n satisfy, or ``max_tries`` batches)."""
    g = torch.Generator().manual_seed(seed)
    cond, cvec = conditions(rules, n, values, np.random.default_rng(seed))
    t0 = time.perf_counter()
    z = torch.randn(n, model.config.z_size, generator=g)
    if method == "actor":
        with torch.no_grad():
            z2 = fitted.actor(z, cvec)
        tokens = _decode(model, z2, temperature, g)
    elif method == "gd":
        z2, _, _ = gradient_search(z, fitted.critic, fitted.sigma_bar, cvec)
        tokens = _decode(model, z2, temperature, g)
    elif method == "reject":
        kept_t, kept_z = [], []
        for _ in range(max_tries):
            zb = torch.randn(max(n, 256), model.config.z_size, generator=g)
            tb = _decode(model, zb, temperature, g)
            cb = {k: np.resize(v, len(tb)) for k, v in cond.items()} if cond else None
            ok = rules.satisfied(tb, cb).all(1)
            kept_t.extend(tb[ok])
            kept_z.extend(zb[torch.from_numpy(ok)])
            if len(kept_t) >= n:
                break
        if len(kept_t) < n:  # not enough found: fill with the last samples and say so in the report
            kept_t.extend(tb[: n - len(kept_t)])
            kept_z.extend(zb[: n - len(kept_z)])
        tokens = np.stack(kept_t[:n])
        z2 = z = torch.stack(kept_z[:n])
    else:
        raise ValueError(f"method must be actor, gd or reject, not {method!r}")
    shift = (z2 - z).norm(dim=-1).numpy()
    report = _summary(rules, tokens, cond, shift, method, time.perf_counter() - t0)
    report["spread"] = latent_spread(z, z2) if n > 2 else 1.0  # near 0: every melody from nearly one latent
    return tokens, report


def transform(tokens: np.ndarray, rules: RuleSet, model: HierarchicalMelodyVAE, fitted: Fitted,
              values: dict | None = None, lambda_dist: float = 0.1, steps: int = 300) -> tuple[np.ndarray, dict]:
    """The identity-preserving transformation: encode, gradient search on the critic with the
    distance penalty, decode (greedy, so the result stays close to the input)."""
    t = np.atleast_2d(tokens)
    n = len(t)
    cond = rules.fixed_conditions(n, **values) if rules.open else None
    cvec = torch.from_numpy(rules.condition_vector(cond)) if cond else torch.zeros(n, 0)
    t0 = time.perf_counter()
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(t.astype(np.int64)))
    z2, done, _ = gradient_search(mu, fitted.critic, fitted.sigma_bar, cvec, lambda_dist=lambda_dist, steps=steps)
    out = model.decode(z2, temperature=0).numpy()
    report = _summary(rules, out, cond, (z2 - mu).norm(dim=-1).numpy(), "transform", time.perf_counter() - t0)
    report["before"] = _summary(rules, t, cond, np.zeros(n), "input", 0.0)["rules"]
    report["steps_changed"] = float((out != t).mean())
    report["critic_satisfied"] = float(done.float().mean())
    return out, report
