"""fit / generate / transform on a tiny VAE: the plumbing, the cache, the reports.

A tiny untrained model cannot show that constraints are learned; the engine's own tests show that on
a synthetic latent space, and the benchmark shows it on the shipped model.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from melody_lc.constrain import Infeasible, cached_fit, fit_rules, generate, load_fitted, save_fitted, transform
from melody_lc.engine import Actor, ActorChain, FitConfig
from melody_lc.melody.model import PRESETS, build_model
from melody_lc.rules import Rule, RuleKind, RuleSet, parse_rules
from tests.conftest import EVERY_DECODER

FAST = FitConfig(
    rounds=2,
    conditional_rounds=2,
    conditional_scale=1,
    initial_samples=64,
    samples_per_round=64,
    critic_steps=5,
    actor_steps=5,
    batch_size=32,
    hidden=16,
    actor_hidden=16,
    ensemble=2,
    stages=1,  # a staged fit: test_a_staged_fit_is_stored_and_generates_as_one_actor
)


MODELS = EVERY_DECODER  # every path works through the decoders' common face


def _setup(config=PRESETS["tiny"]):
    torch.manual_seed(0)
    model = build_model(config).eval()
    rng = np.random.default_rng(0)
    windows = np.where(rng.random((64, 256)) < 0.3, rng.integers(55, 80, (64, 256)), 128).astype(np.uint8)
    return model, windows


@MODELS
def test_fit_is_cached_and_generate_reports(tmp_path, config):
    model, windows = _setup(config)
    rules = parse_rules("key: ? major\ndensity: <= 4 notes per bar")
    t = time.perf_counter()
    fitted = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path)
    first = time.perf_counter() - t
    assert len(fitted.meta["history"]) == 2 and fitted.meta["cond_size"] == 12
    t = time.perf_counter()
    again = fit_rules(
        parse_rules("# same meaning, other spacing\nkey:   ? major\ndensity: <= 4 notes per bar"),
        model,
        windows,
        FAST,
        cache_dir=tmp_path,
    )
    assert time.perf_counter() - t < first
    for k, v in fitted.actor.state_dict().items():  # the same fit, stored in float16
        assert torch.allclose(v, again.actor.state_dict()[k], rtol=1e-3, atol=1e-4)
    for method in ("actor", "gd", "reject"):
        tokens, report = generate(rules, model, 6, fitted, method=method, values={"tonic": 2})
        assert tokens.shape == (6, 256)
        assert set(report["rules"]) == {"key:1", "density:2"} and report["method"] == method
        assert report["all_rules"] == 1.0 and rules.satisfied(tokens, rules.fixed_conditions(6, tonic=2)).all()
        assert report["missing"] == 0 and report["decodes"] >= 6 and report["enforced"]
    raw, raw_report = generate(rules, model, 6, fitted, values={"tonic": 2}, enforce=False)
    assert raw_report["all_rules"] < 1.0  # the untrained decoder breaks the rules by itself: the check can fail


def test_a_staged_fit_is_stored_and_generates_as_one_actor(tmp_path):
    from dataclasses import replace

    model, windows = _setup()
    rules = parse_rules("key: ? major\nrange: C4 .. C6")
    staged = replace(FAST, stages=2, stage_target=1.0)  # a second stage is tried: this model satisfies less
    fitted = fit_rules(rules, model, windows, staged, cache_dir=tmp_path)
    assert {e["stage"] for e in fitted.meta["history"]} == {0, 1}
    assert fitted.meta["stages"] == (len(fitted.actor.stages) if isinstance(fitted.actor, ActorChain) else 1)
    # a chain of two actors (whether or not this tiny fit kept its second stage) is stored and loaded whole
    second = Actor(model.config.z_size, rules.condition_size, 16, FAST.layers, FAST.actor_max_step)
    chain = fitted.actor if isinstance(fitted.actor, ActorChain) else ActorChain([fitted.actor, second])
    fitted.actor, fitted.meta["stages"] = chain, 2
    save_fitted(fitted, tmp_path / "chain")
    loaded = load_fitted(tmp_path / "chain")
    z, c = (
        torch.randn(5, model.config.z_size),
        torch.from_numpy(rules.condition_vector(rules.fixed_conditions(5, tonic=4))),
    )
    with torch.no_grad():
        assert isinstance(loaded.actor, ActorChain) and len(loaded.actor.stages) == 2
        assert torch.allclose(loaded.actor(z, c), chain(z, c), atol=2e-2)  # float16 weights
        assert not torch.allclose(loaded.actor(z, c), chain.stages[0](z, c), atol=1e-3)  # the second stage acts
    tokens, report = generate(rules, model, 4, loaded, values={"tonic": 4})
    assert rules.satisfied(tokens, rules.fixed_conditions(4, tonic=4)).all() and report["missing"] == 0
    # a stored one-stage fit is what a staged fit would be where its first stage reached the target
    one = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path / "one")
    target = one.meta["satisfaction"]
    assert cached_fit(rules, model, [tmp_path / "one"], replace(FAST, stages=2, stage_target=target)) is not None
    if target < 1.0:
        assert cached_fit(rules, model, [tmp_path / "one"], replace(FAST, stages=2, stage_target=1.0)) is None


def test_an_untrained_decoder_obeys_every_rule_under_the_constraints(tmp_path):
    """An untrained decoder almost never writes D dorian within an octave by itself; the mask makes
    every delivered melody obey, and the report says how much it had to overrule the decoder."""
    model, windows = _setup()
    rules = parse_rules(
        "key: D dorian\nrange: D4 .. D5\nleap: <= 5 semitones\ndensity: 2 .. 4 notes per bar\n"
        "rests: <= 30%\nstart: on tonic\nend: on tonic"
    )
    fitted = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path)
    raw, raw_report = generate(rules, model, 24, fitted, seed=1, enforce=False)
    assert raw_report["all_rules"] < 0.2 and raw_report["decodes"] == 24 and not raw_report["enforced"]
    tokens, report = generate(rules, model, 24, fitted, seed=1)
    assert len(tokens) == 24 and rules.satisfied(tokens).all()
    assert report["all_rules"] == 1.0 and report["interventions_per_melody"] > 1
    per_rule = report["rules"]
    assert per_rule["key:1"]["interventions"] > 0 and per_rule["range:2"]["interventions"] > 0
    assert report["decodes_per_melody"] <= 1.5


class _EvenFirstPitch(RuleKind):
    """A plugin-style kind with no decode-time constraint: kept by verification alone."""

    name, summary = "evenfirst", "the first note has an even MIDI number"

    def parse(self, cur):
        return {}

    def describe(self, params):
        return self.summary

    def satisfied(self, tokens, params, cond):
        first = np.take_along_axis(tokens, (tokens < 128).argmax(1)[:, None], 1)[:, 0]
        return (first < 128) & (first % 2 == 0)

    def reward(self, tokens, params, cond):
        return self.satisfied(tokens, params, cond).astype(float)


def test_verification_redraws_and_a_spent_budget_says_what_is_missing(tmp_path):
    model, windows = _setup()
    rules = RuleSet([Rule(_EvenFirstPitch(), {}, 1.0, 1, 1, "evenfirst"), *parse_rules("range: C3 .. C6").rules])
    assert rules.verified_only == ["evenfirst:1"]
    fitted = fit_rules(rules, model, windows, FAST)
    tokens, report = generate(rules, model, 8, fitted, seed=0)
    assert len(tokens) == 8 and rules.satisfied(tokens).all() and report["decodes"] > 8
    assert 0 < report["rules"]["evenfirst:1"]["redrawn"] <= report["decodes"] - 8  # a batch may pass more than needed
    tokens, report = generate(rules, model, 8, fitted, seed=0, max_decodes=4)
    assert len(tokens) < 8 and rules.satisfied(tokens).all()  # what is handed over still obeys
    assert report["missing"] == 8 - len(tokens) and report["decodes"] == 4
    assert report["rules"]["evenfirst:1"]["redrawn"] == 4 - len(tokens)
    from melody_lc.cli.constrain import shortfall

    assert "evenfirst:1 failed" in shortfall(report)


def test_rules_that_allow_no_melody_are_infeasible(tmp_path):
    model, windows = _setup()
    rules = parse_rules("start: on G\nleap: <= 0 semitones\nend: on C")  # every note repeats the first, a G
    rounds = []
    with pytest.raises(Infeasible, match="all 256 draws.*end:3"):  # before the fit
        fit_rules(rules, model, windows, FAST, cache_dir=tmp_path, progress=rounds.append)
    assert rounds == [] and not list(tmp_path.iterdir())
    with pytest.raises(Infeasible, match="all 16 draws.*end:3"):  # and after generate's draws
        generate(rules, model, 4, None, method="reject", max_decodes=16)
    fit_rules(parse_rules("start: on G\nleap: <= 0 semitones\nend: on G"), model, windows, FAST)  # feasible: fitted


@MODELS
def test_transform_obeys_and_leaves_an_obeying_melody_alone(tmp_path, config):
    model, windows = _setup(config)
    rules = parse_rules("key: C major\nrange: C4 .. C6")
    fitted = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path)
    out, report = transform(windows[:3], rules, model, fitted, steps=5)
    assert out.shape == (3, 256) and "before" in report and 0 <= report["steps_changed"] <= 1
    assert rules.satisfied(out).all() and report["all_rules"] == 1.0
    for a, b, changes, kept in zip(windows[:3], out, report["changed"], report["notes_kept"]):
        onset = [lambda s, m=m: int(m[s]) if m[s] < 128 else None for m in (a, b)]
        assert [(c["step"], c["before"], c["after"]) for c in changes] == [
            (s, onset[0](s), onset[1](s)) for s in range(256) if onset[0](s) != onset[1](s)
        ]
        assert all(c["bar"] == c["step"] // 16 + 1 and c["beat"] == c["step"] % 16 / 4 + 1 for c in changes)
        a_notes = [s for s in range(256) if a[s] < 128]
        assert kept == pytest.approx(np.mean([b[s] == a[s] for s in a_notes]))
    assert load_fitted(next(tmp_path.glob("fit-*"))).meta["rules_digest"] == rules.digest()
    obeying = out[:1]
    again, report = transform(obeying, rules, model, fitted, steps=5)
    assert np.array_equal(again, obeying) and report["changed"] == [[]] and report["unchanged_because_obeyed"] == [True]


@MODELS
def test_transform_remembers_the_input_and_changes_only_what_the_rules_require(tmp_path, config):
    """With ``keep`` large the decode writes the input wherever the rules allow: only the F#s of a
    C major tune move; without it (an untrained decoder) most of the tune is lost."""
    from melody_lc.melody import Melody

    model, windows = _setup(config)
    rules = parse_rules("key: C major")
    fitted = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path)
    pitches = [60, 62, 64, 66, 67, 69, 71, 72, 66, 64] * 6
    tune = Melody.from_notes([(p, 4 * i, 4 * i + 3) for i, p in enumerate(pitches)]).tokens.astype(np.int64)
    out, report = transform(tune, rules, model, fitted, steps=5, keep=1e4)
    sharp = tune == 66
    assert rules.satisfied(out).all() and np.array_equal(out[0][~sharp], tune[~sharp]) and (out[0][sharp] != 66).all()
    assert report["notes_kept"][0] == pytest.approx(1 - sharp.sum() / len(pitches))
    assert {c["before"] for c in report["changed"][0]} == {66} and len(report["changed"][0]) == sharp.sum()
    _, forgetful = transform(tune, rules, model, fitted, steps=5, keep=0.0)
    assert forgetful["notes_kept"][0] < 0.5


def test_transform_of_open_rules_without_values_says_which_are_missing(tmp_path):
    from melody_lc.errors import UserError
    from melody_lc.rules import OpenValuesError

    model, windows = _setup()
    rules = parse_rules("key: ? major")
    fitted = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path)
    with pytest.raises(OpenValuesError) as e:
        transform(windows[:1], rules, model, fitted, steps=2)
    assert isinstance(e.value, UserError)
    assert str(e.value) == "no value given for the open parameter tonic of these rules (e.g. values={'tonic': ...})"


def test_the_model_fingerprint_of_fit_keys_does_not_depend_on_the_thread_count():
    """The live engine's worker sets torch to 1 thread for the whole process; a fit found before must
    still be found after (a float sum of the weights differed between thread counts)."""
    import torch

    from melody_lc.constrain import model_fingerprint
    from melody_lc.melody.model import PRESETS, build_model

    model = build_model(PRESETS["tiny"])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model_fingerprint(model)
        torch.set_num_threads(2)
        two = model_fingerprint(model)
    finally:
        torch.set_num_threads(before)
    assert one == two
    with torch.no_grad():
        next(model.parameters()).view(-1)[-1] += 1e-3  # any change of the weights changes it
    assert model_fingerprint(model) != one


def test_a_kinds_own_interventions_scale_and_version_are_part_of_the_fit_key(monkeypatch):
    """A fit scores each rule by its kind's mask_scale: changing it, or the kind's version, must
    make the fit anew rather than find the old one; kinds that set neither leave keys as they were."""
    from melody_lc.constrain import FIT_TEMPERATURE, fit_key
    from melody_lc.rules.kinds import registry

    model, _ = _setup()
    plain = parse_rules("key: C major\nrange: C4 .. C6")
    chords = parse_rules("chords: C | G7 | C | C\nkey: C major")

    def keys():
        return fit_key(plain, model, FAST, FIT_TEMPERATURE), fit_key(chords, model, FAST, FIT_TEMPERATURE)

    before_plain, before_chords = keys()
    for attribute, value in (("mask_scale", 7.0), ("fit_version", 2)):
        with monkeypatch.context() as m:
            m.setattr(type(registry()["chords"]), attribute, value)
            assert keys() == (before_plain, keys()[1]) and keys()[1] != before_chords
        with monkeypatch.context() as m:
            m.setattr(type(registry()["key"]), attribute, value)
            assert keys()[0] != before_plain
    assert keys() == (before_plain, before_chords)


def test_every_shipped_example_finds_its_fit_with_the_shipped_model():
    """models/fits/index.json names each shipped file's fit under the key the code computes now, so
    the README's main job on any example runs without fitting."""
    import json
    from pathlib import Path

    from melody_lc.constrain import FIT_TEMPERATURE, fit_key, shipped_fits_dir
    from melody_lc.melody.train import load_model
    from melody_lc.rules.plan import load_plan

    repo = Path(__file__).resolve().parents[1]
    model, _ = load_model(repo / "models" / "melody-16bar-folk")
    index = json.loads((shipped_fits_dir() / "index.json").read_text())
    found = set()
    for path in sorted((repo / "rules").glob("*.rules")):
        plan = load_plan(path)
        for rs in plan.rulesets():
            name = path.name + (f"#{rs.section_words}" if plan.sectioned else "")
            fitted = cached_fit(rs, model, [], search=(shipped_fits_dir(),))
            assert fitted is not None, name
            if name in index:
                found.add(name)
                assert fitted.meta["rules_digest"] == rs.digest()
                assert index[name]["fit"] in (
                    f"fit-{fit_key(rs, model, FitConfig(), FIT_TEMPERATURE)}",
                    f"fit-{fit_key(rs, model, FitConfig(stages=1), FIT_TEMPERATURE)}",
                )
    assert found == set(index)


def test_a_file_with_a_slowly_learnt_rule_gets_more_rounds_and_only_its_key_changes(tmp_path):
    """A form's repeats are learnt slowly (FitConfig.slow_rounds): a file with a form rule runs
    them; a file without one runs FitConfig.rounds, and its key ignores the slow settings, so its
    shipped fit is still found."""
    from dataclasses import replace

    from melody_lc.constrain import FIT_TEMPERATURE, fit_key

    model, windows = _setup()
    config = replace(FAST, slow_rounds=4, patience=0, slow_patience=0)  # patience 0: every round runs
    plain = parse_rules("key: C major")
    form = parse_rules("form: A A B A\nkey: C major")
    assert len(fit_rules(plain, model, windows, config).meta["history"]) == 2
    fitted = fit_rules(form, model, windows, config, cache_dir=tmp_path)
    assert len(fitted.meta["history"]) == 4 and fitted.meta["fit_config"]["rounds"] == 4
    assert fit_rules(form, model, windows, config, cache_dir=tmp_path).meta == fitted.meta  # found again

    def key(rules, **changes):
        return fit_key(rules, model, replace(config, **changes), FIT_TEMPERATURE)

    assert key(plain, slow_rounds=9, slow_patience=3) == key(plain)
    assert key(form, slow_rounds=9) != key(form)
    assert key(form, slow_rounds=1) == key(form, slow_rounds=2)  # never fewer than FitConfig.rounds
    patient = replace(FAST, patience=2, slow_patience=5)
    assert patient.for_slow_rules().patience == 5 and replace(patient, patience=0).for_slow_rules().patience == 0
