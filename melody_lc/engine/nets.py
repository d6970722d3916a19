"""Critic and actor networks over a latent space (Engel, Hoffman & Roberts 2018, section 3).

Shapes: N latents of size Z, an optional condition vector of size C (open rule parameters,
attributes), K constraints.

    Critic  D([z, c]) -> (N, K) logits, one per constraint; sigmoid(logit) ~ P(constraint holds).
    Actor   G([z, c]) -> (dz, gates), z' = (1 - sigmoid(gates)) * z + sigmoid(gates) * dz:
            the gates let the actor leave most of z alone and move only what the constraints need.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(inp: int, hidden: int, layers: int, out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


def _join(z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    return z if c is None or c.shape[-1] == 0 else torch.cat([z, c.to(z.dtype)], -1)


class Critic(nn.Module):
    """D(z[, c]) -> (N, K) logits. The paper uses 4 x 2048 ReLU layers; smaller on a CPU."""

    def __init__(self, z_size: int, num_constraints: int, cond_size: int = 0, hidden: int = 512, layers: int = 2) -> None:
        super().__init__()
        self.z_size, self.cond_size, self.num_constraints = z_size, cond_size, num_constraints
        self.net = mlp(z_size + cond_size, hidden, layers, num_constraints)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(_join(z, c))


class Actor(nn.Module):
    """G(z[, c]) -> z', a gated shift of z."""

    def __init__(self, z_size: int, cond_size: int = 0, hidden: int = 512, layers: int = 2) -> None:
        super().__init__()
        self.z_size, self.cond_size = z_size, cond_size
        self.net = mlp(z_size + cond_size, hidden, layers, 2 * z_size)
        # start close to the identity: gates mostly closed
        nn.init.constant_(self.net[-1].bias[z_size:], -2.0)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        dz, gates = self.net(_join(z, c)).chunk(2, -1)
        g = torch.sigmoid(gates)
        return (1 - g) * z + g * dz
