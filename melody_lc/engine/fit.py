"""Zero-shot fitting of critics and an actor from a reward function (the paper's section 5.2).

No labels: rounds of
  1. draw prior latents (and the actor's moves of fresh ones) with random conditions,
  2. score them with the true reward (the caller decodes and applies the rules),
  3. train the reward critics (an ensemble) on the scored prior latents, with soft targets, and the
     realism critic on encodings of real data (1) against prior latents (0),
  4. train the actor against both critics' pessimistic answers with the distance penalty.
The true reward is cheap to measure, so each round measures the actor's real satisfaction on fresh
latents; the best actor is kept, and fitting stops once it has not improved for a few rounds.

Stages: critics that learnt from the prior alone know little of where the actor has taken the latents
(a rule the prior almost never satisfies), and the actor's real satisfaction stops rising after a
round or two. While it is below ``stage_target``, a further stage fits new critics and a new actor
on the moves of the stages before (those moves are the new stage's "prior": its scored latents, its
realism critic's fakes, the start of its distance penalty); the result is the chain of actors, kept
while a stage improves the actor (``benchmarks/latent_fitness.py --stages 1 2``).

Why it is built so (``benchmarks/fit_choices.py`` undoes each choice in turn; docs/figures.md):
  - feeding the actor's own outputs back to the critics (or to the realism critic as fakes, a GAN)
    lets the critics chase the actor, and the actor satisfies less. Critics that learn from the
    prior alone do not move under it;
  - one critic is exploited: an actor that follows it satisfies far less often than one that
    follows an ensemble answering mean - 2 std (see nets.CriticEnsemble), and training the actor
    longer against each round's critics does not help either;
  - an actor free to leave the prior's shell finds regions where the critics extrapolate, and the
    paper's gated actor sends every latent to nearly one place (see nets.Actor). Each round logs
    how far apart the actor's outputs stay as ``spread``.

The engine knows only tensors in latent space; :class:`LatentProblem` is what the caller supplies.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from melody_lc.engine.losses import GRADIENT_PENALTY_WEIGHT, actor_loss, critic_loss, gradient_penalty
from melody_lc.engine.nets import Actor, ActorChain, Critic, CriticEnsemble


@dataclass
class LatentProblem:
    """What a fit needs to know of the model and the constraints.

    sample_prior(n, generator) -> (n, Z) latents
    sample_condition(n, generator) -> (n, C) condition vectors (C may be 0)
    score(z, c) -> (rewards (n, K) in [0, 1], satisfied (n, K) bool), both numpy or tensors;
        with relabels > 1, score(z, c, extra) where extra is a list of (m, C) condition tensors also
        returns, third, a list of (rewards, satisfied) of the first m latents under each: one decode
        scored under several values of the open parameters (hindsight relabelling), so that a
        conditional critic sees every value often without more decoding
    sigma_bar: (Z,) mean posterior scale of the encoder
    real_latents: (M, Z) encodings of real data for the realism critic, or None for no realism critic
    examples: (mu, sigma, sign, weight) per set of a composer's examples (``like:``/``unlike:``):
        a critic of the same kind learns their posteriors N(mu, sigma) against prior latents, and
        the actor moves toward (sign 1) or away from (sign -1) them, with that weight
    """

    sample_prior: Callable[[int, torch.Generator], torch.Tensor]
    sample_condition: Callable[[int, torch.Generator], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], tuple]
    sigma_bar: torch.Tensor
    num_constraints: int
    cond_size: int = 0
    real_latents: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    relabels: int = 1  # > 1: score(z, c, extra) also scores the first rows under extra conditions
    examples: list = field(default_factory=list)


@dataclass(frozen=True)
class FitConfig:
    # Sized so that a fit of a few rules takes at most about 90 s on 2 CPU cores, both stages
    # (benchmarks/fit_time.py; the critics' training and the scoring decodes share it): the actor
    # is best after a few rounds, and enforcement makes up for what it misses.
    rounds: int = 6
    # With a condition (open parameters) one actor must learn every value: ``conditional_scale`` times
    # the samples and critic steps, ``conditional_rounds`` rounds and one more round of patience.
    conditional_rounds: int = 16
    conditional_scale: int = 2
    initial_samples: int = 4096  # prior latents scored before the actor's first move
    initial_critic_steps: int = 400  # the first critics learn from the prior alone, and longer
    samples_per_round: int = 512  # scored per later round
    actor_share: float = 0.75  # of which this share are actor outputs (the rest fresh prior latents)
    critic_steps: int = 100
    actor_steps: int = 100  # few per round: an actor trained long against fixed critics exploits their errors
    batch_size: int = 256
    hidden: int = 256  # critics
    actor_hidden: int = 512
    layers: int = 2
    ensemble: int = 4  # reward critics; the actor follows their pessimistic answer (mean - k * std)
    pessimism: float = 2.0
    lambda_dist: float = 0.1
    actor_max_step: float | None = 2.0  # see nets.Actor; None: the paper's gated actor (it collapsed here)
    realism_weight: float = 1.0  # weight of the realism critic's cost in the actor's loss
    realism_fakes: str = "prior"  # "prior", or "prior+actor" (a GAN: the critic chases the actor)
    critic_data: str = "prior"  # the reward critics learn from scored prior latents, or "all" (actor outputs too)
    lr: float = 3e-4  # critics
    actor_lr: float = 2e-4
    replay: int = 32_768  # most recent scored latents kept for the critic
    patience: int = 2  # stop after this many rounds without a better actor (0: run every round)
    # A file with a rule whose graded reward the actor climbs slowly (a kind with ``slow_fit``, such
    # as a form's repeats) gets these instead: its best actor often comes after round 6, and the mask's
    # interventions fall a little, never rise, for about twice the fit time (benchmarks/fit_rounds.py).
    slow_rounds: int = 14
    slow_patience: int = 5
    # Stages (see the module's docstring): at most this many, a further one while the actor alone
    # satisfies every rule less often than stage_target (issue 15's target for the actor alone).
    stages: int = 2
    stage_target: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stages < 1 or not 0.0 <= self.stage_target <= 1.0:
            raise ValueError(
                f"FitConfig needs stages >= 1 and stage_target in [0, 1], not {self.stages}, {self.stage_target}"
            )
        for name, allowed in (("realism_fakes", ("prior", "prior+actor")), ("critic_data", ("prior", "all"))):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"FitConfig.{name} must be {' or '.join(map(repr, allowed))}, not {getattr(self, name)!r}"
                )

    def rounds_for(self, cond_size: int) -> int:
        return self.conditional_rounds if cond_size else self.rounds

    def for_slow_rules(self) -> FitConfig:
        """The settings a file with a slowly learnt rule is fitted with (see ``slow_rounds``)."""
        return replace(
            self,
            rounds=max(self.rounds, self.slow_rounds),
            conditional_rounds=max(self.conditional_rounds, self.slow_rounds),
            patience=max(self.patience, self.slow_patience) if self.patience else 0,
        )

    def for_condition(self, cond_size: int) -> FitConfig:
        """The settings a problem with a condition of this size is fitted with (see above)."""
        if not cond_size:
            return self
        k = self.conditional_scale
        return replace(
            self,
            rounds=self.conditional_rounds,
            initial_samples=k * self.initial_samples,
            samples_per_round=k * self.samples_per_round,
            initial_critic_steps=k * self.initial_critic_steps,
            critic_steps=k * self.critic_steps,
            patience=self.patience + 1 if self.patience else 0,
        )


def latent_spread(z: torch.Tensor, moved: torch.Tensor, limit: int = 256) -> float:
    """How far apart the actor's outputs stay, over how far apart its inputs were (mean pairwise
    distances): 1 keeps the prior's variety; near 0, the actor sends every latent to one place."""
    return float(torch.pdist(moved[:limit]).mean() / torch.pdist(z[:limit]).mean())


@dataclass
class FitResult:
    actor: Actor
    critic: CriticEnsemble
    realism: Critic | None
    history: list[dict] = field(default_factory=list)
    best_round: int = -1
    best_satisfaction: float = 0.0
    best_reward: float = 0.0  # the best actor's mean graded reward: decides where no actor satisfies yet
    best_stage: int = 0


def _real_vs_fake_loss(critic, real: torch.Tensor, fake: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A realism-kind critic's loss: ``real`` latents (1) against ``fake`` ones (0), with the
    gradient penalty (the realism critic on data encodings; a like/unlike critic on examples)."""
    logits = critic(torch.cat([real, fake]))
    labels = torch.cat([torch.ones(len(real), 1), torch.zeros(len(fake), 1)])
    return critic_loss(logits, labels) + GRADIENT_PENALTY_WEIGHT * gradient_penalty(critic, real, fake, None, g)


def fit(
    problem: LatentProblem, config: FitConfig = FitConfig(), progress: Callable[[dict], None] | None = None
) -> FitResult:
    """Fit critics and an actor for ``problem`` in stages (see the module's docstring). The result's
    actor is an :class:`Actor`, or an :class:`ActorChain` of the stages kept; its critics are the
    first stage's, which learnt from the prior (where a user's encoded melody lies)."""
    result = _fit_stage(problem, config, progress)
    for stage in range(1, config.stages):
        if result.best_satisfaction >= config.stage_target:
            break
        start = result.actor
        more = _fit_stage(problem, config, progress, start, stage)
        result.history.extend(more.history)
        if (more.best_satisfaction, more.best_reward) <= (result.best_satisfaction, result.best_reward):
            result.history.append({"stage": stage, "round": None, "stopped": "the stage did not improve the actor"})
            break
        stages = list(start.stages) if isinstance(start, ActorChain) else [start]
        result.actor = ActorChain([*stages, more.actor])
        result.best_round, result.best_satisfaction, result.best_reward = (
            more.best_round,
            more.best_satisfaction,
            more.best_reward,
        )
        result.best_stage = stage
    return result


def _fit_stage(
    problem: LatentProblem,
    config: FitConfig,
    progress: Callable[[dict], None] | None,
    start: torch.nn.Module | None = None,
    stage: int = 0,
) -> FitResult:
    """One stage: critics and an actor for the latents ``start`` moves prior latents to (the prior's
    own without ``start``)."""
    config = config.for_condition(problem.cond_size)
    g = torch.Generator().manual_seed(config.seed + 1000 * stage)
    torch.manual_seed(config.seed + 1000 * stage)

    def moved(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # this stage's "prior": the earlier stages' moves
        if start is None:
            return z
        with torch.no_grad():
            return start(z, c)

    def draw(n: int, c: torch.Tensor) -> torch.Tensor:
        return moved(problem.sample_prior(n, g), c)

    Z, C, K = problem.sigma_bar.shape[0], problem.cond_size, problem.num_constraints
    critic = CriticEnsemble(Z, K, C, config.hidden, config.layers, config.ensemble, config.pessimism)
    realism = Critic(Z, 1, 0, config.hidden, config.layers) if problem.real_latents is not None else None
    actor = Actor(Z, C, config.actor_hidden, config.layers, config.actor_max_step)
    likes = [Critic(Z, 1, 0, config.hidden, config.layers) for _ in problem.examples]
    opt_c = torch.optim.Adam(
        list(critic.parameters())
        + (list(realism.parameters()) if realism else [])
        + [p for like in likes for p in like.parameters()],
        lr=config.lr,
        fused=True,  # one kernel for all parameters: the same update, a few seconds less per fit on a CPU
    )
    opt_a = torch.optim.Adam(actor.parameters(), lr=config.actor_lr, fused=True)
    buf_z, buf_c, buf_r = (torch.zeros(0, Z), torch.zeros(0, C), torch.zeros(0, K))
    result = FitResult(actor, critic, realism)
    best_state = copy.deepcopy(actor.state_dict())
    replay = max(config.replay, config.initial_samples * problem.relabels)  # room for every relabelled copy
    rounds = config.rounds
    for rnd in range(rounds):
        t0 = time.perf_counter()
        # 1-2. score prior latents and the actor's moves of fresh ones (round 0: the prior only, more of it)
        n = config.initial_samples if rnd == 0 else config.samples_per_round
        n_prior = n if rnd == 0 else n - int(n * config.actor_share)
        z_prior = problem.sample_prior(n, g)
        c = problem.sample_condition(n, g)
        z_prior = moved(z_prior, c)
        with torch.no_grad():
            z_moved = actor(z_prior[n_prior:], c[n_prior:])
        z_all = torch.cat([z_prior[:n_prior], z_moved])
        t_score = time.perf_counter()
        if problem.relabels > 1 and C:
            extra_c = [problem.sample_condition(n_prior, g) for _ in range(problem.relabels - 1)]
            rewards, sat, extra = problem.score(z_all, c, extra_c)
        else:
            extra_c, extra = [], []
            rewards, sat = problem.score(z_all, c)
        t_score = time.perf_counter() - t_score
        rewards = torch.as_tensor(np.asarray(rewards), dtype=torch.float32)
        sat = np.asarray(sat, dtype=bool)
        actor_sat = float(sat[n_prior:].all(1).mean()) if rnd > 0 else 0.0
        prior_sat = float(sat[:n_prior].all(1).mean())
        shift = float((z_moved - z_prior[n_prior:]).norm(dim=-1).mean()) if rnd > 0 else 0.0
        actor_reward = float(rewards[n_prior:].mean()) if rnd > 0 else 0.0
        spread = latent_spread(z_prior[n_prior:], z_moved) if rnd > 0 else 1.0
        # the actor of the round before, on fresh latents; rules none of it satisfies yet: the mean reward decides
        if rnd > 0 and (actor_sat, actor_reward) > (result.best_satisfaction, result.best_reward):
            result.best_satisfaction, result.best_round, result.best_reward = actor_sat, rnd - 1, actor_reward
            best_state = copy.deepcopy(actor.state_dict())
        elif config.patience and rnd - 1 - result.best_round > config.patience:
            result.history.append(
                {
                    "stage": stage,
                    "round": rnd,
                    "stopped": f"no better actor for {config.patience} rounds",
                    "actor_satisfaction": actor_sat,
                }
            )
            break  # the actor has stopped improving: it is now learning the critics' errors
        keep = len(z_all) if config.critic_data == "all" else n_prior
        new_z, new_c, new_r = [z_all[:keep]], [c[:keep]], [rewards[:keep]]
        for ce, (re, _) in zip(extra_c, extra):
            new_z.append(z_all[:n_prior])
            new_c.append(ce)
            new_r.append(torch.as_tensor(np.asarray(re), dtype=torch.float32))
        buf_z = torch.cat([buf_z, *new_z])[-replay:]
        buf_c = torch.cat([buf_c, *new_c])[-replay:]
        buf_r = torch.cat([buf_r, *new_r])[-replay:]
        # 3. critics
        for _ in range(config.initial_critic_steps if rnd == 0 else config.critic_steps):
            idx = torch.randint(0, len(buf_z), (config.batch_size,), generator=g)
            zb, cb = buf_z[idx], buf_c[idx]
            perm = torch.randperm(len(idx), generator=g)
            # every member at once (CriticEnsemble.all_logits): each its own loss and penalty, summed
            members = len(critic.members)
            loss = sum(critic_loss(logits, buf_r[idx]) for logits in critic.all_logits(zb, cb))
            pairs = zb.expand(members, *zb.shape), zb[perm].expand(members, *zb.shape)
            loss = loss + GRADIENT_PENALTY_WEIGHT * gradient_penalty(critic.all_logits, *pairs, cb, g)
            if realism is not None:
                ridx = torch.randint(0, len(problem.real_latents), (config.batch_size,), generator=g)
                real = problem.real_latents[ridx]
                fake = zb if config.realism_fakes == "prior+actor" else draw(config.batch_size, buf_c[idx])
                loss = loss + _real_vs_fake_loss(realism, real, fake, g)
            # the examples' posteriors against this stage's prior
            for like, (mu, sigma, _, _) in zip(likes, problem.examples):
                eidx = torch.randint(0, len(mu), (config.batch_size,), generator=g)
                real = mu[eidx] + sigma[eidx] * torch.randn(config.batch_size, Z, generator=g)
                loss = loss + _real_vs_fake_loss(like, real, draw(config.batch_size, buf_c[idx]), g)
            opt_c.zero_grad()
            loss.backward()
            opt_c.step()
        # 4. actor
        for _ in range(config.actor_steps):
            z = problem.sample_prior(config.batch_size, g)
            cb = problem.sample_condition(config.batch_size, g)
            z = moved(z, cb)
            z2 = actor(z, cb)
            logits = critic(z2, cb)
            if realism is not None:
                logits = torch.cat([logits, realism(z2)], -1)
            w = problem.weights if problem.weights is not None else torch.ones(K)
            if realism is not None:
                w = torch.cat([w, torch.full((1,), config.realism_weight)])
            for like, (_, _, sign, weight) in zip(likes, problem.examples):
                logits = torch.cat([logits, sign * like(z2)], -1)
                w = torch.cat([w, torch.full((1,), float(weight))])
            terms = actor_loss(logits, z, z2, problem.sigma_bar, config.lambda_dist, w)
            opt_a.zero_grad()
            terms["loss"].backward()
            opt_a.step()
        entry = {
            "stage": stage,
            "round": rnd,
            "prior_satisfaction": prior_sat,
            "actor_satisfaction": actor_sat,
            "mean_reward": float(rewards[n_prior:].mean()) if rnd > 0 else float(rewards.mean()),
            "latent_shift": shift,
            "spread": spread,
            "actor_distance": float(terms["distance"]),
            "seconds": round(time.perf_counter() - t0, 2),
            "score_seconds": round(t_score, 2),
        }
        result.history.append(entry)
        if progress is not None:
            progress(entry)
    else:  # all rounds ran: the last round's actor is judged on fresh latents too
        z = problem.sample_prior(config.samples_per_round, g)
        c = problem.sample_condition(config.samples_per_round, g)
        with torch.no_grad():
            rewards, sat = problem.score(actor(moved(z, c), c), c)
        last = float(np.asarray(sat, dtype=bool).all(1).mean())
        if last > result.best_satisfaction:
            result.best_satisfaction, result.best_round = last, rounds - 1
            result.best_reward = float(np.asarray(rewards).mean())
            return result
    actor.load_state_dict(best_state)
    return result
