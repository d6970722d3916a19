"""Fitting a rules file to the VAE, zero-shot: the paper's critics and actor, scored by decoding
melodies under the rules' constraints; fits cached and shipped by the key of what they depend on."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from melody_lc import checkpoint
from melody_lc.constrain.enforce import FIT_TEMPERATURE, Checked, check_feasible, decode_checked
from melody_lc.engine import Actor, ActorChain, CriticEnsemble, FitConfig, LatentProblem, fit
from melody_lc.melody.model import MelodyVAE
from melody_lc.rules import RuleSet
from melody_lc.rules.examples import bind_examples, example_rules

FIT_KIND = "melody-lc-actor"


def model_fingerprint(model: MelodyVAE) -> str:
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for k, v in sorted(model.state_dict().items()):  # every weight's exact bytes: the same whatever the
        h.update(k.encode())  # thread count (a float sum was not)
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def posterior_stats(model: MelodyVAE, windows: np.ndarray, limit: int = 2048, seed: int = 0):
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


def save_fit_stats(model_dir: str | os.PathLike, model: MelodyVAE, windows: np.ndarray, data: str) -> None:
    """Store what a fit takes from the training data (the mean posterior scale per dimension and
    posterior means of real melodies) beside the model, so that a new rules file fits without
    the dataset."""
    from melody_lc.fileio import write_json

    sigma_bar, real = posterior_stats(model, windows)
    d = Path(model_dir)
    checkpoint.save_tensors(d / f"{FIT_STATS}.safetensors", {"sigma_bar": sigma_bar, "real": real})
    write_json(d / f"{FIT_STATS}.json", {"model": model_fingerprint(model), "encodings": len(real), "data": data})


def load_fit_stats(model_dir: str | os.PathLike, model: MelodyVAE) -> tuple[torch.Tensor, torch.Tensor] | None:
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
    actor: Actor | ActorChain
    critic: CriticEnsemble
    sigma_bar: torch.Tensor
    meta: dict


RELABELS = 8  # rules with open parameters: each scored prior melody is scored under this many values


MASK_SCALE = 2.0  # fitting: the interventions at which a rule's reward has fallen to 1/e (a kind may set its own)
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
    scale = np.array([getattr(r.kind, "mask_scale", None) or MASK_SCALE for r in rules.rules])
    mask_reward = np.exp(-checked.by_rule / scale[None, :]) * np.where(checked.failed, rewards, 1.0)
    rewards = np.where(masked[None, :], mask_reward, rewards)
    return rewards, ~checked.failed & ~((checked.by_rule > 0) & masked[None, :])


def config_for(rules: RuleSet, config: FitConfig) -> FitConfig:
    """The settings ``rules`` are fitted with: ``config``, with more rounds where a rule is learnt
    slowly (a kind with ``slow_fit``)."""
    return config.for_slow_rules() if any(getattr(r.kind, "slow_fit", False) for r in rules.rules) else config


def fit_rounds(rules: RuleSet, config: FitConfig) -> int:
    """The most rounds a stage of the fit of ``rules`` runs (for a progress bar; a further stage
    runs as many again)."""
    return config_for(rules, config).rounds_for(rules.condition_size)


def kind_facts(rules: RuleSet) -> dict:
    """What a fit takes from the rules' kinds besides their parameters: the interventions scale of
    a kind that sets its own (``mask_scale``; also keyed where no mask is fitted on, which costs at
    most a needless fit) and its ``fit_version``. Kinds that set neither add nothing, so their
    fits keep the keys they had before these were keyed."""
    facts = {}
    for r in rules.rules:
        scale, version = getattr(r.kind, "mask_scale", None), getattr(r.kind, "fit_version", None)
        if scale is not None or version is not None:
            facts[r.kind.name] = {"mask_scale": scale, "version": None if version is None else str(version)}
    return facts


def fit_key(rules: RuleSet, model: MelodyVAE, config: FitConfig, temperature: float) -> str:
    """What a fit depends on: the rules' meaning and kinds, the model's weights, the fit settings
    (a change of MASK_SCALE or of how fits score melodies changes FIT_SCORING)."""
    settings = asdict(config_for(rules, config))
    for name in ("slow_rounds", "slow_patience"):  # applied above: the rounds and patience say what they did
        del settings[name]
    if settings["stages"] == 1:  # a fit of one stage is a fit as made before stages: its key is unchanged
        del settings["stages"], settings["stage_target"]
    parts = [rules.digest(), model_fingerprint(model), settings, temperature, FIT_SCORING]
    if rules.open:
        parts.append({"relabels": RELABELS})
    if facts := kind_facts(rules):
        parts.append({"kinds": facts})
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def shipped_fits_dir() -> Path:
    from melody_lc.paths import shipped_dir

    return shipped_dir("models") / "fits"


def fit_rules(
    rules: RuleSet,
    model: MelodyVAE,
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
    config = config_for(rules, config)
    bind_examples(rules, model)
    check_feasible(rules, model, temperature)  # rules that allow no melody are said before the data is read
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
        examples=[  # like:/unlike: the realism critic's machinery on the composer's examples
            (r.params["examples"].mu, r.params["examples"].sigma, r.kind.sign, r.weight) for r in example_rules(rules)
        ],
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
        "stages": stages_of(result.actor),  # the best actor's stage is the last of them
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
    model: MelodyVAE,
    folders=(),
    config: FitConfig = FitConfig(),
    temperature: float = FIT_TEMPERATURE,
    search: tuple = (),
) -> Fitted | None:
    """The fit of ``rules`` already stored in one of ``folders`` (then ``search``), or None: tells
    at once whether ``fit_rules`` would have to fit. A staged fit whose first stage reaches the
    target stops there, so a stored one-stage fit that reached it is that fit."""
    key = fit_key(rules, model, config, temperature)
    for folder in [*folders, *search]:
        if checkpoint.exists(Path(folder) / f"fit-{key}"):
            return load_fitted(Path(folder) / f"fit-{key}")
    if config.stages > 1:
        first = fit_key(rules, model, replace(config, stages=1), temperature)
        for folder in [*folders, *search]:
            if checkpoint.exists(Path(folder) / f"fit-{first}"):
                fitted = load_fitted(Path(folder) / f"fit-{first}")
                if fitted.meta["satisfaction"] >= config.stage_target:
                    return fitted
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
            "actor_stages": stages_of(f.actor),
        },
        weights,
        meta=f.meta,
        dtype=torch.float16,
    )  # half the size; the nets run in float32


def stages_of(actor: Actor | ActorChain) -> int:
    return len(actor.stages) if isinstance(actor, ActorChain) else 1


def load_fitted(path: str | os.PathLike) -> Fitted:
    ck = checkpoint.load(path, FIT_KIND)
    c, w = ck["config"], ck["weights"]
    actors = [
        Actor(c["z_size"], c["cond_size"], c["actor_hidden"], c["layers"], c.get("actor_max_step"))
        for _ in range(c.get("actor_stages", 1))
    ]
    actor = actors[0] if len(actors) == 1 else ActorChain(actors)
    critic = CriticEnsemble(
        c["z_size"], c["num_constraints"], c["cond_size"], c["hidden"], c["layers"], c["ensemble"], c["pessimism"]
    )
    actor.load_state_dict({k[6:]: v for k, v in w.items() if k.startswith("actor.")})
    critic.load_state_dict({k[7:]: v for k, v in w.items() if k.startswith("critic.")})
    return Fitted(actor.eval(), critic.eval(), w["sigma_bar"].float(), ck["meta"])
