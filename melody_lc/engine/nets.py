"""Critic and actor networks over a latent space (Engel, Hoffman & Roberts 2018, section 3).

Shapes: N latents of size Z, an optional condition vector of size C (open rule parameters,
attributes), K constraints.

    Critic  D([z, c]) -> (N, K) logits, one per constraint; sigmoid(logit) ~ P(constraint holds).
            CriticEnsemble: several, answering pessimistically (mean - k * std).
    Actor   G([z, c]) -> (dz, gates). The paper's gated actor (``max_step=None``):
            z' = (1 - sigmoid(gates)) * z + sigmoid(gates) * dz, dz bounded to the prior's support
            (|dz| <= 3, by a scaled tanh). The default here is a bounded step instead:
            z' = z + sigmoid(gates) * max_step * tanh(dz), at most ``max_step`` per dimension.
            Either way z' is given the norm of z: a Gaussian prior's samples lie on a thin shell
            (|z| ~ sqrt(Z)), and off that shell the critics have seen no data and extrapolate.

            Why the bounded step: the gated actor can open every gate and replace z, and it did,
            sending every latent to nearly one place (the same melody, the same '7'); the bounded
            step keeps the prior's variety at almost the same satisfaction (``benchmarks/fit_choices.py``
            and ``paper_table.py`` measure both; docs/figures.md).
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
    """[z, c]; z may have leading dimensions that c (N, C) lacks (one batch per ensemble member)."""
    if c is None or c.shape[-1] == 0:
        return z
    return torch.cat([z, c.to(z.dtype).expand(*z.shape[:-1], c.shape[-1])], -1)


class Critic(nn.Module):
    """D(z[, c]) -> (N, K) logits. The paper uses 4 x 2048 ReLU layers; smaller on a CPU."""

    def __init__(
        self, z_size: int, num_constraints: int, cond_size: int = 0, hidden: int = 512, layers: int = 2
    ) -> None:
        super().__init__()
        self.z_size, self.cond_size, self.num_constraints = z_size, cond_size, num_constraints
        self.net = mlp(z_size + cond_size, hidden, layers, num_constraints)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(_join(z, c))


class CriticEnsemble(nn.Module):
    """E critics trained alike from different initialisations; as a critic it answers pessimistically,
    mean - k * std of the members' logits per constraint, so that the actor and the gradient search
    are steered away from where the members disagree, i.e. where the reward is a guess: an actor
    trained against a single critic learns to exploit its errors (``benchmarks/fit_choices.py``)."""

    def __init__(
        self,
        z_size: int,
        num_constraints: int,
        cond_size: int = 0,
        hidden: int = 256,
        layers: int = 2,
        members: int = 4,
        pessimism: float = 2.0,
    ) -> None:
        super().__init__()
        self.z_size, self.cond_size, self.num_constraints = z_size, cond_size, num_constraints
        self.pessimism = pessimism
        self.members = nn.ModuleList(Critic(z_size, num_constraints, cond_size, hidden, layers) for _ in range(members))

    def all_logits(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """(E, N, K): every member's logits, for z (N, Z) or one batch per member (E, N, Z).

        The members' same layers run as one batched matmul (their weights stacked): the same
        arithmetic as each member on its own, in fewer and larger kernels (with fused Adam, a
        critic step of a fit 1.15x as fast on a CPU: benchmarks/fit_time.py)."""
        h = _join(z, c)
        nets = [m.net for m in self.members]
        for k in range(0, len(nets[0]), 2):  # Linear, ReLU, ..., Linear (see mlp)
            w = torch.stack([net[k].weight for net in nets])  # (E, out, in)
            b = torch.stack([net[k].bias for net in nets])[:, None]  # (E, 1, out)
            h = torch.baddbmm(b, h, w.transpose(1, 2)) if h.dim() == 3 else torch.matmul(h, w.transpose(1, 2)) + b
            if k + 1 < len(nets[0]):
                h = torch.relu(h)
        return h

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.all_logits(z, c)
        if len(self.members) == 1:
            return logits[0]
        return logits.mean(0) - self.pessimism * logits.std(0)


class Actor(nn.Module):
    """G(z[, c]) -> z', a gated shift of z."""

    bound = 3.0  # |dz| <= 3 prior standard deviations

    def __init__(
        self, z_size: int, cond_size: int = 0, hidden: int = 512, layers: int = 2, max_step: float | None = None
    ) -> None:
        super().__init__()
        self.z_size, self.cond_size, self.max_step = z_size, cond_size, max_step
        self.net = mlp(z_size + cond_size, hidden, layers, 2 * z_size)
        # start close to the identity: gates mostly closed
        nn.init.constant_(self.net[-1].bias[z_size:], -2.0)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        dz, gates = self.net(_join(z, c)).chunk(2, -1)
        if self.max_step is not None:  # a step of at most max_step per dimension: z' keeps z's identity
            g = torch.sigmoid(gates)
            moved = z + g * self.max_step * torch.tanh(dz)
        else:
            g = torch.sigmoid(gates)
            moved = (1 - g) * z + g * (self.bound * torch.tanh(dz / self.bound))
        return moved * (z.norm(dim=-1, keepdim=True) / moved.norm(dim=-1, keepdim=True).clamp_min(1e-6))


class ActorChain(nn.Module):
    """Actors applied in turn, z -> G_1(z) -> G_2(G_1(z)) ...: the result of a staged fit
    (``engine.fit``), where each stage's critics learnt from the moves of the stages before it and
    its actor moves those on."""

    def __init__(self, actors: list[Actor]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(actors)
        self.z_size, self.cond_size = actors[0].z_size, actors[0].cond_size

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        for actor in self.stages:
            z = actor(z, c)
        return z
