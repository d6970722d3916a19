"""Teach by example: like: / unlike: a composer's own MIDI files, read, checked with the model's
encoder, learned by the fit, and enforced on what is handed over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from melody_lc.errors import UserError
from melody_lc.melody.encoding import REST
from melody_lc.rules import RulesError, parse_rules
from melody_lc.rules.examples import bind_examples
from tests.conftest import write_midi

REPO = Path(__file__).resolve().parents[2]
TUNES = REPO / "rules" / "my_tunes"


@pytest.fixture(scope="module")
def model():
    from melody_lc.melody.train import load_model

    return load_model(REPO / "models" / "melody-16bar-folk")[0]


def _rules(tmp_path: Path, text: str):
    f = tmp_path / "r.rules"
    f.write_text(text)
    return parse_rules(text, str(f))


def test_examples_are_read_from_a_folder_or_a_file_relative_to_the_rules_file(tmp_path):
    rs = parse_rules(f"like: {TUNES}\n")
    assert len(rs.rules[0].params["examples"].tokens) == 4
    short = write_midi(tmp_path / "four_bars.mid", [[(60 + k % 5, 4 * k, 4 * k + 3, 90) for k in range(16)]])
    rs = _rules(tmp_path, "unlike: four_bars.mid\n")  # relative to the rules file
    (window,) = rs.rules[0].params["examples"].tokens
    assert window[0] == 60 and window[63] == REST and (window[63:] >= 128).all()  # padded with silence to 16 bars
    assert "farther from the 1 example window of four_bars.mid" in rs.explain()
    assert short.exists()


@pytest.mark.parametrize(
    "text, says",
    [
        ("like: nowhere/\n", "r.rules:1:7: no such file or folder"),
        ("like:\n", "r.rules:1:6: expected a folder of .mid files or a .mid file"),
        ("like: empty/\n", "no .mid files in the folder"),
        ("like: broken.mid\n", "cannot read"),
        ("bars 1-4: like: broken.mid\n", "'like' compares whole melodies: it cannot be scoped to bars"),
    ],
)
def test_examples_that_cannot_be_read_say_where_and_why(tmp_path, text, says):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mid").write_bytes(b"not a MIDI file")
    with pytest.raises(RulesError) as e:
        _rules(tmp_path, text)
    assert says in str(e.value)


def test_like_is_checked_in_the_models_latent_space_against_its_own_melodies(model):
    like, unlike = parse_rules(f"like: {TUNES}\n"), parse_rules(f"unlike: {TUNES}\n")
    examples = like.rules[0].params["examples"]
    with pytest.raises(UserError, match="must be bound to a model"):
        like.satisfied(examples.tokens)
    bind_examples(like, model)
    bind_examples(unlike, model)
    assert like.satisfied(examples.tokens).all() and not unlike.satisfied(examples.tokens).any()
    g = torch.Generator().manual_seed(11)
    prior = model.decode(torch.randn(128, model.config.z_size, generator=g), 0.5, g).numpy()
    near = like.satisfied(prior)[:, 0]
    assert 0.3 < near.mean() < 0.7  # the threshold: the median of the model's own melodies
    assert np.array_equal(near | unlike.satisfied(prior)[:, 0], np.ones(len(prior), bool))
    r = like.rewards(prior)[:, 0]
    assert (r[near] == 1).all() and (r[~near] < 1).all()
    none = np.zeros((0, 256), np.int64)  # no melody delivered: a report of none
    assert like.satisfied(none).shape == (0, 1) and unlike.rewards(none).shape == (0, 1)


def test_the_fit_moves_the_actor_toward_the_examples_and_generate_hands_over_only_near_ones(model):
    from melody_lc.constrain import FIT_TEMPERATURE, generate, load_fit_stats
    from melody_lc.constrain.fitting import fit_rules
    from melody_lc.engine import FitConfig

    rules = parse_rules(f"like: {TUNES}\n")
    stats = load_fit_stats(REPO / "models" / "melody-16bar-folk", model)
    config = FitConfig(
        rounds=2, initial_samples=256, samples_per_round=128, initial_critic_steps=100, critic_steps=50, actor_steps=50
    )
    fitted = fit_rules(rules, model, stats, config)
    ex = rules.rules[0].params["examples"]
    g = torch.Generator().manual_seed(3)
    z = torch.randn(128, model.config.z_size, generator=g)
    with torch.no_grad():
        moved = fitted.actor(z, torch.zeros(128, 0))
    prior_d = ex.distance(model.decode(z, FIT_TEMPERATURE, g).numpy()).mean()
    actor_d = ex.distance(model.decode(moved, FIT_TEMPERATURE, g).numpy()).mean()
    assert actor_d < prior_d - 0.05, (prior_d, actor_d)  # on an AVX2 machine: 0.873 -> 0.563
    tokens, report = generate(rules, model, 8, fitted, seed=2)
    assert rules.satisfied(tokens).all() and report["all_rules"] == 1.0
    near = report["examples"]["like:1"]  # the report says how much nearer than the model's own melodies
    assert near["mean_distance"] <= near["threshold"] < near["model_own"]["mean_distance"] + 0.1


def test_generate_says_how_near_the_examples_its_melodies_came(tmp_path):
    from tests.conftest import run_cli

    res = run_cli("generate", "--rules", str(REPO / "rules" / "like_my_tunes.rules"), "-n", "4", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    (line,) = [x for x in res.stdout.splitlines() if x.startswith("like:4: mean latent distance to the examples")]
    assert "(the model's own melodies: " in line and "feature overlap with them" in line
