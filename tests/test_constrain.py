"""fit / generate / transform on a tiny VAE: the plumbing, the cache, the reports.

A tiny untrained model cannot show that constraints are learned; the engine's own tests show that on
a synthetic latent space, and the benchmark shows it on the shipped model.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from melody_lc.constrain import fit_rules, generate, load_fitted, transform
from melody_lc.engine import FitConfig
from melody_lc.melody.model import PRESETS, HierarchicalMelodyVAE
from melody_lc.rules import parse_rules

FAST = FitConfig(rounds=2, initial_samples=64, samples_per_round=64, critic_steps=5, actor_steps=5, batch_size=32, hidden=16, actor_hidden=16, ensemble=2)


def _setup():
    torch.manual_seed(0)
    model = HierarchicalMelodyVAE(PRESETS["tiny"]).eval()
    rng = np.random.default_rng(0)
    windows = np.where(rng.random((64, 256)) < 0.3, rng.integers(55, 80, (64, 256)), 128).astype(np.uint8)
    return model, windows


def test_fit_is_cached_and_generate_reports(tmp_path):
    model, windows = _setup()
    rules = parse_rules("key: ? major\ndensity: <= 16 notes per bar")
    t = time.perf_counter()
    fitted = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path)
    first = time.perf_counter() - t
    assert len(fitted.meta["history"]) == 2 and fitted.meta["cond_size"] == 12
    t = time.perf_counter()
    again = fit_rules(parse_rules("# same meaning, other spacing\nkey:   ? major\ndensity: <= 16 notes per bar"),
                      model, windows, FAST, cache_dir=tmp_path)
    assert time.perf_counter() - t < first
    for k, v in fitted.actor.state_dict().items():  # the same fit, stored in float16
        assert torch.allclose(v, again.actor.state_dict()[k], rtol=1e-3, atol=1e-4)
    for method in ("actor", "gd", "reject"):
        tokens, report = generate(rules, model, 6, fitted, method=method, values={"tonic": 2})
        assert tokens.shape == (6, 256)
        assert set(report["rules"]) == {"key:1", "density:2"} and report["rules"]["density:2"]["satisfied"] == 1.0
        assert 0 <= report["all_rules"] <= 1 and report["method"] == method
    tokens, report = generate(rules, model, 4, fitted, method="reject", values={"tonic": 0}, max_tries=2)
    assert tokens.shape == (4, 256)


def test_transform_reports_before_and_after(tmp_path):
    model, windows = _setup()
    rules = parse_rules("key: C major")
    fitted = fit_rules(rules, model, windows, FAST, cache_dir=tmp_path)
    out, report = transform(windows[:3], rules, model, fitted, steps=5)
    assert out.shape == (3, 256) and "before" in report and 0 <= report["steps_changed"] <= 1
    assert load_fitted(next(tmp_path.glob("fit-*"))).meta["rules_digest"] == rules.digest()


def test_the_model_fingerprint_of_fit_keys_does_not_depend_on_the_thread_count():
    """The live engine's worker sets torch to 1 thread for the whole process; a fit found before must
    still be found after (a float sum of the weights differed between thread counts)."""
    import torch

    from melody_lc.constrain import model_fingerprint
    from melody_lc.melody.model import PRESETS, HierarchicalMelodyVAE

    model = HierarchicalMelodyVAE(PRESETS["tiny"])
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
