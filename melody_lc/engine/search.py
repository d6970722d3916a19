"""Gradient-based latent search: move each z until every critic is satisfied (the paper's GD method).

Adam on z minimises the weighted critic costs -log sigmoid(D(z)) plus lambda_dist times the distance
penalty to the starting point. An example stops moving as soon as every critic's probability passes
its threshold, so satisfied examples keep the smallest shift found.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from melody_lc.engine.losses import distance_penalty


def gradient_search(
    z0: torch.Tensor,
    critic: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    sigma_bar: torch.Tensor,
    cond: torch.Tensor | None = None,
    lambda_dist: float = 0.1,
    threshold: float = 0.9,
    weights: torch.Tensor | None = None,
    steps: int = 200,
    lr: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Returns (z, done (N,) bool, steps taken). ``critic(z, cond)`` gives (N, K) logits."""
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    step = 0
    for step in range(1, steps + 1):  # noqa: B007 - the steps taken are returned after the loop
        logits = critic(z, cond)
        with torch.no_grad():
            done |= (torch.sigmoid(logits) >= threshold).all(-1)
        if bool(done.all()):
            break
        cost = F.softplus(-logits)
        if weights is not None:
            cost = cost * weights
        per_example = cost.sum(-1) + lambda_dist * distance_penalty(z0, z, sigma_bar)
        loss = (per_example * (~done).to(per_example.dtype)).sum()
        opt.zero_grad()
        loss.backward()
        keep = z.detach().clone()
        opt.step()
        with torch.no_grad():
            z[done] = keep[done]  # finished examples stay where they are (Adam's momentum would move them)
    return z.detach(), done, step
