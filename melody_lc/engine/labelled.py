"""Fitting from labelled data (the paper's conditional actor-critic, section 4): no reward function,
but encodings of real data with their attributes.

  realism critic   D_r(z): encodings of data, z ~ q(z|x), labelled 1, against prior latents, 0
  attribute critic D_a(z) -> (N, A) logits: which attributes a latent decodes to, learnt from the
                   same encodings and their labels (sigmoid cross-entropy)
  actor            G(z, y) -> z': moves a prior latent so that it decodes realistically with the
                   attributes y, by as little as it can:
                   loss = w_r * -log D_r(z') + sum_a BCE(D_a(z'), y_a) + lambda_dist * distance(z, z')

The critics do not depend on the actor (they learn from data and the prior only), so they are
trained first and the actor after them; the melody fits showed that critics that chase the actor
make the loop oscillate. The attributes y given to the actor during training are rows of real
labels, so it learns the combinations that occur. For per-example search (identity-preserving
transformation) use :func:`attribute_cost` with :func:`gradient_search`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from melody_lc.engine.losses import GRADIENT_PENALTY_WEIGHT, critic_loss, distance_penalty, gradient_penalty
from melody_lc.engine.nets import Actor, Critic


@dataclass
class LabelledProblem:
    """mu, sigma: (M, Z) posterior means and scales of data; labels: (M, A) in {0, 1}."""

    mu: torch.Tensor
    sigma: torch.Tensor
    labels: torch.Tensor

    @property
    def sigma_bar(self) -> torch.Tensor:
        return self.sigma.mean(0)


@dataclass(frozen=True)
class LabelledFitConfig:
    critic_steps: int = 3000
    actor_steps: int = 2000
    batch_size: int = 256
    hidden: int = 512
    actor_hidden: int = 512
    layers: int = 2
    lambda_dist: float = 0.1  # 0: the paper's "no distance penalty" row
    realism_weight: float = 1.0
    actor_max_step: float | None = 2.0  # see nets.Actor; None: the paper's gated actor (it collapses)
    lr: float = 3e-4
    actor_lr: float = 3e-4
    seed: int = 0


@dataclass
class LabelledFit:
    actor: Actor
    realism: Critic
    attributes: Critic
    sigma_bar: torch.Tensor
    history: list[dict] = field(default_factory=list)


def fit_labelled(
    problem: LabelledProblem,
    config: LabelledFitConfig = LabelledFitConfig(),
    progress: Callable[[dict], None] | None = None,
) -> LabelledFit:
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    M, Z = problem.mu.shape
    A = problem.labels.shape[1]
    realism = Critic(Z, 1, 0, config.hidden, config.layers)
    attributes = Critic(Z, A, 0, config.hidden, config.layers)
    actor = Actor(Z, A, config.actor_hidden, config.layers, config.actor_max_step)
    out = LabelledFit(actor, realism, attributes, problem.sigma_bar)
    opt = torch.optim.Adam(list(realism.parameters()) + list(attributes.parameters()), lr=config.lr)
    t0 = time.perf_counter()
    for step in range(config.critic_steps):
        idx = torch.randint(0, M, (config.batch_size,), generator=g)
        z_data = problem.mu[idx] + problem.sigma[idx] * torch.randn(len(idx), Z, generator=g)
        z_prior = torch.randn(len(idx), Z, generator=g)
        logits = realism(torch.cat([z_data, z_prior]))
        target = torch.cat([torch.ones(len(idx), 1), torch.zeros(len(idx), 1)])
        loss = critic_loss(logits, target) + GRADIENT_PENALTY_WEIGHT * gradient_penalty(
            realism, z_data, z_prior, None, g
        )
        loss = loss + critic_loss(attributes(z_data), problem.labels[idx]) / A
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None and (step + 1) % 500 == 0:
            progress({"phase": "critics", "step": step + 1, "loss": float(loss), "seconds": time.perf_counter() - t0})
    opt_a = torch.optim.Adam(actor.parameters(), lr=config.actor_lr)
    for p in list(realism.parameters()) + list(attributes.parameters()):
        p.requires_grad_(False)
    for step in range(config.actor_steps):
        z = torch.randn(config.batch_size, Z, generator=g)
        y = problem.labels[torch.randint(0, M, (config.batch_size,), generator=g)]
        z2 = actor(z, y)
        real_cost = F.softplus(-realism(z2)).mean()
        attr_cost = F.binary_cross_entropy_with_logits(attributes(z2), y, reduction="none").sum(-1).mean()
        dist = distance_penalty(z, z2, out.sigma_bar).mean()
        loss = config.realism_weight * real_cost + attr_cost + config.lambda_dist * dist
        opt_a.zero_grad()
        loss.backward()
        opt_a.step()
        if (step + 1) % 500 == 0 or step + 1 == config.actor_steps:
            entry = {
                "phase": "actor",
                "step": step + 1,
                "realism_cost": float(real_cost.detach()),
                "attribute_cost": float(attr_cost.detach()),
                "distance": float(dist.detach()),
                "seconds": time.perf_counter() - t0,
            }
            out.history.append(entry)
            if progress is not None:
                progress(entry)
    for p in list(realism.parameters()) + list(attributes.parameters()):
        p.requires_grad_(True)
    for net in (actor, realism, attributes):
        net.eval()
    return out


def attribute_cost(realism: Critic, attributes: Critic, wanted: torch.Tensor, targets: torch.Tensor):
    """A critic for :func:`gradient_search`: (N, 1 + W) logits that are all high when z decodes
    realistically with attribute ``wanted[j]`` equal to ``targets[:, j]`` (0 or 1)."""
    sign = 2 * targets - 1  # attributes wanted off: their logit, negated, must be high

    def critic(z: torch.Tensor, _c=None) -> torch.Tensor:
        return torch.cat([realism(z), attributes(z)[:, wanted] * sign], -1)

    return critic
