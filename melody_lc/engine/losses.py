"""The losses of latent constraints, each a small pure function of tensors.

critic_loss       sigmoid cross-entropy against targets in [0, 1] (hard labels for realism,
                  soft rewards for zero-shot constraints), mean over examples, summed over constraints
gradient_penalty  one-sided WGAN-GP-style: max(0, |grad_z D(z_hat)| - 1)^2 on random interpolates z_hat,
                  weight 10. One-sided (a Lipschitz bound, not a unit slope everywhere): a critic
                  forced to slope 1 everywhere always shows the actor an uphill direction past the
                  data, and the actor-critic loop oscillated; a bounded slope lets it level off.
distance_penalty  mean over dimensions of log(1 + (z' - z)^2) / sigma_bar^2: the actor should move
                  a latent as little as it can, measured in units of the encoder's posterior spread
actor_loss        -log sigmoid(D(z')) summed over constraints (weighted) + lambda_dist * distance
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GRADIENT_PENALTY_WEIGHT = 10.0


def critic_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none").mean(0).sum()


def gradient_penalty(
    critic,
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    c: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Penalty on the critic's gradient norm at points between two batches of latents (N, Z).
    Batches with leading dimensions, (E, N, Z) for ``CriticEnsemble.all_logits``, give each
    member's penalty (the mean over its N points), summed."""
    t = torch.rand(*z_a.shape[:-1], 1, generator=generator, device=z_a.device)
    z_hat = (t * z_a + (1 - t) * z_b).detach().requires_grad_(True)
    out = critic(z_hat, c).sum()
    (grad,) = torch.autograd.grad(out, z_hat, create_graph=True)
    return (torch.relu(grad.norm(dim=-1) - 1.0) ** 2).mean(-1).sum()


def distance_penalty(z: torch.Tensor, z_prime: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
    """(N,) per-example penalty: mean over dimensions of log(1 + (z' - z)^2) / sigma_bar^2."""
    return (torch.log1p((z_prime - z) ** 2) / sigma_bar**2).mean(-1)


def actor_loss(
    critic_logits: torch.Tensor,
    z: torch.Tensor,
    z_prime: torch.Tensor,
    sigma_bar: torch.Tensor,
    lambda_dist: float,
    weights: torch.Tensor | None = None,
) -> dict:
    """Named terms; ``loss`` is what the actor minimises."""
    cost = F.softplus(-critic_logits)  # -log sigmoid(logit), (N, K)
    if weights is not None:
        cost = cost * weights
    constraint = cost.sum(-1).mean()
    dist = distance_penalty(z, z_prime, sigma_bar).mean()
    return {"loss": constraint + lambda_dist * dist, "constraint": constraint.detach(), "distance": dist.detach()}
