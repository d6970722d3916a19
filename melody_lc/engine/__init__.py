"""Latent constraints, modality-free: critics, actor, losses, gradient search and the fit loop.

Knows only tensors in latent space (and numpy rewards from the caller); imports nothing from the
melody, image, midi, tui or cli packages.
"""

from melody_lc.engine.fit import FitConfig, FitResult, LatentProblem, fit, latent_spread
from melody_lc.engine.losses import actor_loss, critic_loss, distance_penalty, gradient_penalty
from melody_lc.engine.nets import Actor, ActorChain, Critic, CriticEnsemble
from melody_lc.engine.realism import RealismFit, fit_realism
from melody_lc.engine.search import gradient_search

__all__ = [
    "Actor",
    "ActorChain",
    "Critic",
    "CriticEnsemble",
    "FitConfig",
    "FitResult",
    "LatentProblem",
    "RealismFit",
    "actor_loss",
    "critic_loss",
    "distance_penalty",
    "fit",
    "fit_realism",
    "gradient_penalty",
    "gradient_search",
    "latent_spread",
]
