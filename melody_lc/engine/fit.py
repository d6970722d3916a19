"""Zero-shot fitting of critics and an actor from a reward function (the paper's section 5.2).

No labels: rounds of
  1. draw prior latents (and the actor's moves of them) with random conditions,
  2. score them with the true reward (the caller decodes and applies the rules),
  3. train the reward critic on everything scored so far (a replay buffer) with soft targets, and
     the realism critic on encodings of real data (1) against prior and actor latents (0),
  4. train the actor against both critics with the distance penalty.
Adversarial loops oscillate (the paper says so), and the true reward is cheap to measure, so each
round measures the actor's real satisfaction on fresh latents and the best actor is kept.

The engine knows only tensors in latent space; :class:`LatentProblem` is what the caller supplies.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from melody_lc.engine.losses import GRADIENT_PENALTY_WEIGHT, actor_loss, critic_loss, gradient_penalty
from melody_lc.engine.nets import Actor, Critic


@dataclass
class LatentProblem:
    """What a fit needs to know of the model and the constraints.

    sample_prior(n, generator) -> (n, Z) latents
    sample_condition(n, generator) -> (n, C) condition vectors (C may be 0)
    score(z, c) -> (rewards (n, K) in [0, 1], satisfied (n, K) bool), both numpy or tensors
    sigma_bar: (Z,) mean posterior scale of the encoder
    real_latents: (M, Z) encodings of real data for the realism critic, or None for no realism critic
    """

    sample_prior: Callable[[int, torch.Generator], torch.Tensor]
    sample_condition: Callable[[int, torch.Generator], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], tuple]
    sigma_bar: torch.Tensor
    num_constraints: int
    cond_size: int = 0
    real_latents: torch.Tensor | None = None
    weights: torch.Tensor | None = None


@dataclass(frozen=True)
class FitConfig:
    rounds: int = 12
    samples_per_round: int = 1024  # scored per round: half prior latents, half actor outputs
    critic_steps: int = 400
    actor_steps: int = 300
    batch_size: int = 256
    hidden: int = 512
    layers: int = 2
    lambda_dist: float = 0.1
    lr: float = 3e-4
    replay: int = 32_768  # most recent scored latents kept for the critic
    seed: int = 0


@dataclass
class FitResult:
    actor: Actor
    critic: Critic
    realism: Critic | None
    history: list[dict] = field(default_factory=list)
    best_round: int = -1
    best_satisfaction: float = 0.0


def fit(problem: LatentProblem, config: FitConfig = FitConfig(),
        progress: Callable[[dict], None] | None = None) -> FitResult:
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    Z, C, K = problem.sigma_bar.shape[0], problem.cond_size, problem.num_constraints
    critic = Critic(Z, K, C, config.hidden, config.layers)
    realism = Critic(Z, 1, 0, config.hidden, config.layers) if problem.real_latents is not None else None
    actor = Actor(Z, C, config.hidden, config.layers)
    opt_c = torch.optim.Adam(list(critic.parameters()) + (list(realism.parameters()) if realism else []), lr=config.lr)
    opt_a = torch.optim.Adam(actor.parameters(), lr=config.lr)
    buf_z, buf_c, buf_r = (torch.zeros(0, Z), torch.zeros(0, C), torch.zeros(0, K))
    result = FitResult(actor, critic, realism)
    best_state = copy.deepcopy(actor.state_dict())
    half = config.samples_per_round // 2
    for rnd in range(config.rounds):
        t0 = time.perf_counter()
        # 1-2. score prior latents and the actor's moves of fresh ones
        z_prior = problem.sample_prior(config.samples_per_round, g)
        c = problem.sample_condition(config.samples_per_round, g)
        with torch.no_grad():
            z_moved = actor(z_prior[half:], c[half:])
        z_all = torch.cat([z_prior[:half], z_moved])
        rewards, sat = problem.score(z_all, c)
        rewards = torch.as_tensor(np.asarray(rewards), dtype=torch.float32)
        sat = np.asarray(sat, dtype=bool)
        actor_sat = float(sat[half:].all(1).mean())
        prior_sat = float(sat[:half].all(1).mean())
        shift = float((z_moved - z_prior[half:]).norm(dim=-1).mean())
        if rnd > 0 and actor_sat > result.best_satisfaction:  # round 0's actor is untrained
            result.best_satisfaction, result.best_round = actor_sat, rnd - 1
            best_state = copy.deepcopy(actor.state_dict())
        buf_z = torch.cat([buf_z, z_all])[-config.replay :]
        buf_c = torch.cat([buf_c, c])[-config.replay :]
        buf_r = torch.cat([buf_r, rewards])[-config.replay :]
        # 3. critics
        for _ in range(config.critic_steps):
            idx = torch.randint(0, len(buf_z), (config.batch_size,), generator=g)
            zb, cb = buf_z[idx], buf_c[idx]
            perm = torch.randperm(len(idx), generator=g)
            loss = critic_loss(critic(zb, cb), buf_r[idx])
            loss = loss + GRADIENT_PENALTY_WEIGHT * gradient_penalty(critic, zb, zb[perm], cb, g)
            if realism is not None:
                ridx = torch.randint(0, len(problem.real_latents), (config.batch_size,), generator=g)
                real = problem.real_latents[ridx]
                fake = zb  # prior latents and actor outputs alike
                logits = realism(torch.cat([real, fake]))
                labels = torch.cat([torch.ones(len(real), 1), torch.zeros(len(fake), 1)])
                loss = loss + critic_loss(logits, labels) + GRADIENT_PENALTY_WEIGHT * gradient_penalty(realism, real, fake, None, g)
            opt_c.zero_grad()
            loss.backward()
            opt_c.step()
        # 4. actor
        for _ in range(config.actor_steps):
            z = problem.sample_prior(config.batch_size, g)
            cb = problem.sample_condition(config.batch_size, g)
            z2 = actor(z, cb)
            logits = critic(z2, cb)
            if realism is not None:
                logits = torch.cat([logits, realism(z2)], -1)
            w = problem.weights
            if w is not None and realism is not None:
                w = torch.cat([w, torch.ones(1)])
            terms = actor_loss(logits, z, z2, problem.sigma_bar, config.lambda_dist, w)
            opt_a.zero_grad()
            terms["loss"].backward()
            opt_a.step()
        entry = {"round": rnd, "prior_satisfaction": prior_sat, "actor_satisfaction": actor_sat,
                 "mean_reward": float(rewards[half:].mean()), "latent_shift": shift,
                 "actor_distance": float(terms["distance"]), "seconds": round(time.perf_counter() - t0, 2)}
        result.history.append(entry)
        if progress is not None:
            progress(entry)
    # the last round's actor is judged on fresh latents too
    z = problem.sample_prior(config.samples_per_round, g)
    c = problem.sample_condition(config.samples_per_round, g)
    with torch.no_grad():
        _, sat = problem.score(actor(z, c), c)
    last = float(np.asarray(sat, dtype=bool).all(1).mean())
    if last > result.best_satisfaction:
        result.best_satisfaction, result.best_round = last, config.rounds - 1
    else:
        actor.load_state_dict(best_state)
    return result
