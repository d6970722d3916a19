"""The realism constraint alone (the paper's unconditional use of it): an actor that moves prior
samples toward the latents real data encodes to, with the smallest move.

A critic D learns to tell real latents (encodings of data, q(z|x)) from fakes: prior samples and
the actor's outputs (so that the actor cannot settle where the critic has never looked); the actor
G minimises  softplus(-D(G(z))) + lambda_dist * mean_d log(1 + (G(z) - z)^2 / sigma_bar_d^2),  the
fit's own actor loss with the realism critic as its only constraint. No decoding: a fit of this
kind takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from melody_lc.engine.fit import FitConfig
from melody_lc.engine.losses import GRADIENT_PENALTY_WEIGHT, actor_loss, critic_loss, gradient_penalty
from melody_lc.engine.nets import Actor, Critic


@dataclass
class RealismFit:
    actor: Actor
    critic: Critic
    history: list[dict]


def fit_realism(
    real_latents: torch.Tensor, sigma_bar: torch.Tensor, config: FitConfig = FitConfig(), steps: int = 2000
) -> RealismFit:
    """Alternate one critic step and one actor step ``steps`` times; the history holds, every 100
    steps, how real the critic finds prior samples and the actor's outputs (mean sigmoid D)."""
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    Z, B = real_latents.shape[1], config.batch_size
    critic = Critic(Z, 1, 0, config.hidden, config.layers)
    actor = Actor(Z, 0, config.actor_hidden, config.layers, config.actor_max_step)
    opt_c = torch.optim.Adam(critic.parameters(), lr=config.lr)
    opt_a = torch.optim.Adam(actor.parameters(), lr=config.actor_lr)
    history = []
    for step in range(steps):
        real = real_latents[torch.randint(0, len(real_latents), (B,), generator=g)]
        z = torch.randn(B, Z, generator=g)
        with torch.no_grad():
            moved = actor(z[B // 2 :])
        fake = torch.cat([z[: B // 2], moved])
        labels = torch.cat([torch.ones(B, 1), torch.zeros(B, 1)])
        loss = critic_loss(critic(torch.cat([real, fake])), labels)
        loss = loss + GRADIENT_PENALTY_WEIGHT * gradient_penalty(critic, real, fake, None, g)
        opt_c.zero_grad()
        loss.backward()
        opt_c.step()
        z = torch.randn(B, Z, generator=g)
        z2 = actor(z)
        terms = actor_loss(critic(z2), z, z2, sigma_bar, config.lambda_dist)
        opt_a.zero_grad()
        terms["loss"].backward()
        opt_a.step()
        if step % 100 == 99 or step == steps - 1:
            with torch.no_grad():
                history.append(
                    {
                        "step": step + 1,
                        "prior_real": float(torch.sigmoid(critic(z)).mean()),
                        "actor_real": float(torch.sigmoid(critic(z2)).mean()),
                        "data_real": float(torch.sigmoid(critic(real)).mean()),
                        "shift": float((z2 - z).norm(dim=-1).mean()),
                    }
                )
    return RealismFit(actor.eval(), critic.eval(), history)
