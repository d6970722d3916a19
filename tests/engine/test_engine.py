"""The modality-free engine on a synthetic latent space where the truth is known."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from melody_lc.engine import (
    Actor,
    ActorChain,
    Critic,
    CriticEnsemble,
    FitConfig,
    LatentProblem,
    distance_penalty,
    fit,
    gradient_penalty,
    gradient_search,
)

Z = 8


def toy_problem(real=True) -> LatentProblem:
    """Constraint 1: z0 > 1.2 (about 11% of the prior). Constraint 2, conditional: z1 * c > 0.5."""

    def score(z, c, extra=()):
        z, c = z.numpy(), c.numpy()[:, 0]
        s1 = z[:, 0] > 1.2
        s2 = z[:, 1] * c > 0.5
        r1 = np.where(s1, 1.0, np.exp(-(1.2 - z[:, 0])))
        r2 = np.where(s2, 1.0, np.exp(-(0.5 - z[:, 1] * c)))
        scored = np.stack([r1, r2], 1), np.stack([s1, s2], 1)
        if not extra:
            return scored
        return (*scored, [score(torch.from_numpy(z[: len(e)]), e) for e in extra])  # the same z, other conditions

    return LatentProblem(
        sample_prior=lambda n, g: torch.randn(n, Z, generator=g),
        sample_condition=lambda n, g: torch.randint(0, 2, (n, 1), generator=g).float() * 2 - 1,
        score=score,
        sigma_bar=torch.full((Z,), 0.5),
        num_constraints=2,
        cond_size=1,
        real_latents=torch.randn(2000, Z, generator=torch.Generator().manual_seed(9)) if real else None,
        relabels=2,
    )


def test_zero_shot_fit_satisfies_conditional_constraints_with_a_small_shift():
    prob = toy_problem()
    # z0 > 1.2 from z0 ~ N(0, 1) needs moves of up to 3 or more in that dimension: a step bound of 3
    res = fit(
        prob,
        FitConfig(
            rounds=10,
            conditional_rounds=10,
            conditional_scale=1,
            initial_samples=1024,
            samples_per_round=512,
            critic_steps=150,
            actor_steps=150,
            hidden=64,
            actor_hidden=64,
            seed=0,
            actor_max_step=3.0,
        ),
    )
    assert res.history[0]["prior_satisfaction"] < 0.1
    assert res.best_satisfaction > 0.9
    g = torch.Generator().manual_seed(123)
    z = prob.sample_prior(1000, g)
    for sign in (-1.0, 1.0):  # one actor serves both values of the condition
        c = torch.full((1000, 1), sign)
        with torch.no_grad():
            z2 = res.actor(z, c)
        _, sat = prob.score(z2, c)
        assert sat.all(1).mean() > 0.85
        # dimensions no constraint cares about barely move
        assert (z2[:, 2:] - z[:, 2:]).abs().mean() < 0.5 * (z2[:, :2] - z[:, :2]).abs().mean() + 0.1


@pytest.mark.parametrize("switch", [{"realism_fakes": "prior+actor"}, {"critic_data": "all"}])
def test_each_fit_switch_changes_the_fit_and_a_misspelt_value_is_refused(switch):
    small = dict(
        rounds=3,
        conditional_rounds=3,
        conditional_scale=1,
        initial_samples=256,
        samples_per_round=128,
        initial_critic_steps=20,
        critic_steps=10,
        actor_steps=10,
        hidden=16,
        actor_hidden=16,
        patience=0,
    )

    def learnt(config):  # what a fit learnt, round by round (its timings left out)
        return [{k: v for k, v in e.items() if "seconds" not in k} for e in fit(toy_problem(), config).history]

    base = learnt(FitConfig(**small))
    assert learnt(FitConfig(**small, **switch)) != base
    if "critic_data" in switch:  # a fit is deterministic, so the difference is the switch's
        assert learnt(FitConfig(**small)) == base
    with pytest.raises(ValueError, match=f"FitConfig.{next(iter(switch))} must be"):
        FitConfig(**{k: "typo" for k in switch})


def test_the_realism_actor_moves_prior_samples_toward_the_data_with_a_small_move():
    """Real latents sit in one corner (z0 near 1.5, the rest as the prior): the actor takes prior
    samples there, mostly along z0, and the critic finds its outputs real."""
    from melody_lc.engine import fit_realism

    g = torch.Generator().manual_seed(3)
    real = torch.randn(2000, Z, generator=g)
    real[:, 0] = 1.5 + 0.3 * torch.randn(2000, generator=g)
    small = FitConfig(hidden=32, actor_hidden=32, batch_size=128, actor_max_step=3.0)
    res = fit_realism(real, torch.full((Z,), 0.5), small, steps=600)
    z = torch.randn(1000, Z, generator=g)
    with torch.no_grad():
        z2 = res.actor(z)
    assert abs(float(z2[:, 0].mean()) - 1.5) < 0.5 and abs(float(z[:, 0].mean()) - 1.5) > 1.3
    assert (z2[:, 1:] - z[:, 1:]).abs().mean() < 0.5 * (z2[:, 0] - z[:, 0]).abs().mean()
    last = res.history[-1]
    assert last["actor_real"] > last["prior_real"] + 0.2


def test_gradient_search_stops_each_example_when_satisfied():
    critic = lambda z, c: torch.stack([6 * (z[:, 0] - 1.2), 6 * (z[:, 1] - 0.0)], -1)  # noqa: E731
    z0 = torch.randn(200, Z, generator=torch.Generator().manual_seed(0))
    z, done, steps = gradient_search(z0, critic, torch.full((Z,), 0.5), threshold=0.9, steps=500, lr=0.05)
    assert bool(done.all()) and steps < 500
    p = torch.sigmoid(critic(z, None))
    assert (p >= 0.9).all()
    already = (torch.sigmoid(critic(z0, None)) >= 0.9).all(-1)
    assert torch.equal(z[already], z0[already])  # satisfied from the start: not moved at all
    assert (z[:, 2:] - z0[:, 2:]).abs().max() < 1e-6  # only the constrained dimensions moved


def test_losses_and_networks():
    z = torch.randn(5, Z)
    assert torch.equal(distance_penalty(z, z, torch.ones(Z)), torch.zeros(5))
    actor = Actor(Z, 0, hidden=32)
    shift = (actor(z) - z).abs().mean()
    assert shift < 1.0  # gates start mostly closed
    lin = torch.nn.Linear(Z, 1, bias=False)
    with torch.no_grad():
        lin.weight[:] = torch.ones(1, Z) / Z**0.5  # gradient norm exactly 1 everywhere
    gp = gradient_penalty(lambda zz, c: lin(zz), torch.randn(10, Z), torch.randn(10, Z))
    assert float(gp.detach()) < 1e-10
    assert Critic(Z, 3, 2)(z, torch.zeros(5, 2)).shape == (5, 3)
    # one-sided: a slope under 1 costs nothing
    gp = gradient_penalty(lambda zz, c: 0.5 * lin(zz), torch.randn(10, Z), torch.randn(10, Z))
    assert float(gp.detach()) == 0.0
    gp = gradient_penalty(lambda zz, c: 3 * lin(zz), torch.randn(10, Z), torch.randn(10, Z))
    assert float(gp.detach()) == pytest.approx(4.0, rel=1e-5)


def test_actor_keeps_the_norm_and_stays_in_the_prior_box():
    torch.manual_seed(0)
    actor = Actor(Z, 1, hidden=32)
    with torch.no_grad():
        actor.net[-1].bias[:Z] = 50.0  # dz far outside the prior
        actor.net[-1].bias[Z:] = 10.0  # gates wide open
    z = torch.randn(64, Z)
    z2 = actor(z, torch.ones(64, 1))
    assert torch.allclose(z2.norm(dim=-1), z.norm(dim=-1), rtol=1e-5)
    # before the projection every coordinate was within 3: after it, the direction is (1, ..., 1)
    assert torch.allclose(z2 / z2.norm(dim=-1, keepdim=True), torch.full((64, Z), Z**-0.5), atol=1e-3)


def test_critic_ensemble_answers_pessimistically():
    torch.manual_seed(0)
    ens = CriticEnsemble(Z, 2, 0, hidden=16, members=3, pessimism=2.0)
    z = torch.randn(7, Z)
    each = ens.all_logits(z)
    assert each.shape == (3, 7, 2)
    assert torch.allclose(ens(z), each.mean(0) - 2.0 * each.std(0))
    assert (ens(z) <= each.mean(0)).all()
    single = CriticEnsemble(Z, 2, 0, hidden=16, members=1)
    assert torch.allclose(single(z), single.members[0](z), atol=1e-6)


def test_the_ensemble_runs_its_members_at_once_as_each_would_alone():
    """all_logits stacks the members' weights into batched matmuls: each member's answer, with a
    condition, and for one batch per member; the gradient penalty of such batches is the members'
    own penalties summed, and gradients reach every member's weights."""
    torch.manual_seed(0)
    ens = CriticEnsemble(Z, 3, 2, hidden=16, members=4)
    z, c = torch.randn(9, Z), torch.randn(9, 2)
    alone = torch.stack([m(z, c) for m in ens.members])
    assert torch.allclose(ens.all_logits(z, c), alone, atol=1e-6)
    per_member = torch.randn(4, 9, Z)
    alone = torch.stack([m(per_member[i], c) for i, m in enumerate(ens.members)])
    assert torch.allclose(ens.all_logits(per_member, c), alone, atol=1e-6)
    # slopes 3 (member 0) and 0.5 (the rest): only the first pays, (3 - 1)^2 = 4
    lin = torch.nn.Linear(Z, 1, bias=False)
    with torch.no_grad():
        lin.weight[:] = torch.ones(1, Z) / Z**0.5
    slope = torch.tensor([3.0, 0.5, 0.5, 0.5])[:, None, None]
    gp = gradient_penalty(lambda zz, c: slope * lin(zz), torch.randn(4, 9, Z), torch.randn(4, 9, Z))
    assert float(gp.detach()) == pytest.approx(4.0, rel=1e-5)
    gp = gradient_penalty(ens.all_logits, per_member, per_member.flip(1), c)
    gp.backward()
    assert all(m.net[0].weight.grad is not None for m in ens.members)


def test_engine_imports_no_modality():
    code = "import sys, melody_lc.engine; print(sorted(m for m in sys.modules if m.startswith('melody_lc.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "melody_lc.melody" not in out and "melody_lc.rules" not in out and "melody_lc.cli" not in out


def test_the_bounded_actor_moves_each_dimension_at_most_max_step_and_keeps_variety():
    from melody_lc.engine import latent_spread

    torch.manual_seed(0)
    actor = Actor(Z, 0, hidden=32, max_step=0.5)
    with torch.no_grad():
        actor.net[-1].bias[:Z] = 50.0  # dz saturated and gates wide open: the largest move it can make
        actor.net[-1].bias[Z:] = 50.0
    z = torch.randn(500, Z, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z2 = actor(z)
    # before the projection onto |z| the step is at most 0.5 per dimension; after it, still close
    assert (z2 - z).norm(dim=-1).max() < 2 * 0.5 * Z**0.5
    assert torch.allclose(z2.norm(dim=-1), z.norm(dim=-1), atol=1e-4)
    assert latent_spread(z, z2) > 0.8  # outputs as far apart as their inputs, nearly
    # what the spread measures: an actor sending everything to one place scores near 0
    collapsed = torch.randn(1, Z).expand(500, Z) + 0.01 * torch.randn(500, Z)
    assert latent_spread(z, collapsed) < 0.05
    gated = Actor(Z, 0, hidden=32)  # the paper's gated actor can replace z outright
    with torch.no_grad():
        gated.net[-1].bias[Z:] = 50.0
        gated.net[-1].weight[:Z] = 0.0
        gated.net[-1].bias[:Z] = 1.0
        z3 = gated(z)
    assert latent_spread(z, z3) < 0.3  # one direction: only the norms (kept from z) still differ


def test_a_condition_gets_more_data_rounds_and_patience():
    c = FitConfig()
    assert c.for_condition(0) == c and c.rounds_for(0) == c.rounds
    k = c.for_condition(12)
    assert k.rounds == c.conditional_rounds == c.rounds_for(12) and k.patience == c.patience + 1
    m = c.conditional_scale
    assert m > 1 and (k.initial_samples, k.samples_per_round, k.critic_steps) == (
        m * c.initial_samples,
        m * c.samples_per_round,
        m * c.critic_steps,
    )


def test_a_further_stage_moves_on_from_the_stage_before_while_the_actor_falls_short():
    """z0 > 1.5 (7% of the prior) with a step of at most 0.5 per dimension: one stage cannot take
    most latents there; each further stage starts from the moves of the ones before."""

    def score(z, c):
        z0 = z.numpy()[:, 0]
        return np.exp(-np.maximum(1.5 - z0, 0.0))[:, None], (z0 > 1.5)[:, None]

    prob = LatentProblem(
        sample_prior=lambda n, g: torch.randn(n, Z, generator=g),
        sample_condition=lambda n, g: torch.zeros(n, 0),
        score=score,
        sigma_bar=torch.full((Z,), 0.5),
        num_constraints=1,
    )
    small = dict(rounds=3, initial_samples=512, samples_per_round=256, initial_critic_steps=100, critic_steps=100)
    small.update(actor_steps=200, actor_lr=1e-3, hidden=32, actor_hidden=32, actor_max_step=0.5, lambda_dist=0.01)
    res = fit(prob, FitConfig(**small, patience=0, stages=3, stage_target=0.99))
    assert isinstance(res.actor, ActorChain) and len(res.actor.stages) == res.best_stage + 1 == 3
    starts = [e for e in res.history if e["round"] == 0]
    assert [e["stage"] for e in starts] == [0, 1, 2]
    # each stage's "prior" is the moves of the stages before: it starts about where they ended
    first = max(e["actor_satisfaction"] for e in res.history if e["stage"] == 0)
    assert starts[0]["prior_satisfaction"] < 0.12 and starts[1]["prior_satisfaction"] > 0.5 * first
    z = prob.sample_prior(2000, torch.Generator().manual_seed(5))
    with torch.no_grad():
        sat_first = score(res.actor.stages[0](z, None), None)[1].mean()
        sat_all = score(res.actor(z, None), None)[1].mean()
    assert sat_first < 0.3 and sat_all > sat_first + 0.2, (sat_first, sat_all)
    # an actor that already reaches the target gets no further stage
    quick = FitConfig(rounds=1, initial_samples=64, initial_critic_steps=1, actor_steps=1, stages=3, stage_target=0.0)
    assert isinstance(fit(prob, quick).actor, Actor)
