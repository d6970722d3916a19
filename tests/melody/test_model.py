"""The VAE: shapes, the fused sampling loop against teacher forcing, loss terms, checkpoints."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from melody_lc import checkpoint
from melody_lc.melody.model import PRESETS, HierarchicalMelodyVAE, ParallelMelodyVAE, VAEConfig, build_model, vae_loss
from melody_lc.melody.train import load_model
from tests.conftest import EVERY_DECODER, TINY_MODELS


def _tokens(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.where(rng.random((n, 256)) < 0.3, rng.integers(50, 80, (n, 256)), 128))


TINY_PARALLEL = TINY_MODELS["parallel"]


@pytest.mark.parametrize("encoder", ["flat", "hierarchical", "patches", "patches+head"])
def test_shapes_and_loss_terms(encoder):
    cfg = (
        TINY_PARALLEL
        if encoder == "patches"
        else TINY_MODELS["parallel+head"]
        if encoder == "patches+head"
        else VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), "encoder": encoder})
    )
    model = build_model(cfg)
    assert isinstance(model, ParallelMelodyVAE if encoder.startswith("patches") else HierarchicalMelodyVAE)
    tokens = _tokens()
    logits, mu, sigma = model(tokens)
    assert logits.shape == (4, 256, 130) and mu.shape == sigma.shape == (4, cfg.z_size) and (sigma > 0).all()
    terms = vae_loss(logits, tokens, mu, sigma, cfg)
    assert set(terms) == {"loss", "recon", "kl_bits", "beta", "kl_term", "accuracy"}
    # below the free bits the KL costs nothing: the loss is the reconstruction alone
    assert float(terms["kl_bits"]) < cfg.free_bits and torch.isclose(terms["loss"], terms["recon"])
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_kl_beyond_free_bits_is_weighted_by_beta():
    cfg = PRESETS["tiny"]
    tokens = _tokens(2)
    logits = torch.zeros(2, 256, 130)
    mu = torch.full((2, cfg.z_size), 3.0)
    sigma = torch.ones(2, cfg.z_size)
    t = vae_loss(logits, tokens, mu, sigma, cfg)
    kl_nats = 0.5 * 9.0 * cfg.z_size
    assert float(t["kl_bits"]) == pytest.approx(kl_nats / np.log(2), rel=1e-5)
    assert float(t["loss"]) == pytest.approx(
        float(t["recon"]) + cfg.beta * (kl_nats - cfg.free_bits * np.log(2)), rel=1e-5
    )
    assert float(t["loss"]) == pytest.approx(float(t["recon"]) + float(t["kl_term"]), rel=1e-6)


def test_shards_judged_on_the_whole_batch_kl_give_the_whole_batch_gradient():
    """DDP: each process sees a shard. With the free-bits threshold judged on the mean KL over all
    shards, the mean of the shards' gradients is the whole batch's gradient, even when one shard's
    own KL is below the threshold and the other's above."""
    cfg = PRESETS["tiny"]
    tokens = _tokens(4)
    torch.manual_seed(0)
    logits = torch.randn(4, 256, 130, requires_grad=True)
    mu = torch.tensor(
        [[2.0] * cfg.z_size, [0.1] * cfg.z_size, [2.2] * cfg.z_size, [0.2] * cfg.z_size], requires_grad=True
    )
    sigma = torch.ones(4, cfg.z_size, requires_grad=True)
    shards = [slice(0, None, 2), slice(1, None, 2)]
    kl_bits = [float(vae_loss(logits[r], tokens[r], mu[r], sigma[r], cfg)["kl_bits"]) for r in shards]
    whole = vae_loss(logits, tokens, mu, sigma, cfg)
    cfg = VAEConfig.from_dict({**cfg.to_dict(), "free_bits": (min(kl_bits) + float(whole["kl_bits"])) / 2})
    assert min(kl_bits) < cfg.free_bits < float(whole["kl_bits"]) < max(kl_bits)  # the shards straddle it

    def grads(loss):
        return torch.autograd.grad(loss, (logits, mu, sigma))

    reference = grads(vae_loss(logits, tokens, mu, sigma, cfg)["loss"])
    whole_kl = vae_loss(logits, tokens, mu, sigma, cfg)["kl_bits"] * np.log(2)
    judged = [
        grads(vae_loss(logits[r], tokens[r], mu[r], sigma[r], cfg, kl_reference=whole_kl)["loss"]) for r in shards
    ]
    own = [grads(vae_loss(logits[r], tokens[r], mu[r], sigma[r], cfg)["loss"]) for r in shards]
    for i in range(3):
        torch.testing.assert_close((judged[0][i] + judged[1][i]) / 2, reference[i])
    assert not torch.allclose((own[0][1] + own[1][1]) / 2, reference[1])  # each shard on its own KL: wrong


@pytest.mark.parametrize("bar_carry", [False, True])
def test_fused_sampling_loop_matches_teacher_forcing(bar_carry):
    torch.manual_seed(1)
    model = HierarchicalMelodyVAE(VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), "bar_carry": bar_carry})).eval()
    z = torch.randn(5, PRESETS["tiny"].z_size)
    greedy = model.decode(z, temperature=0)
    assert greedy.shape == (5, 256)
    # feeding the greedy output back with teacher forcing must give the same argmax everywhere
    assert torch.equal(model.decode_logits(z, greedy).argmax(-1), greedy)
    # the previous bar's last token reaches the next bar only with bar_carry
    changed = greedy.clone()
    changed[:, 15] = (greedy[:, 15] + 1) % 130
    moved = (model.decode_logits(z, changed)[:, 16] - model.decode_logits(z, greedy)[:, 16]).abs().max()
    assert (moved > 0) == bar_carry
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(3, 1.0, g1), model.sample(3, 1.0, g2))


def test_the_decoders_step_in_bf16_sums_as_before():
    """With bf16 weights the first layer's input gates come in float32 (the bar embedding's share
    plus the token's); the step adds the bf16 recurrent product to them as a separate sum, as it
    always did (fp32 adds it inside the matmul). Runs on any CPU: only matmuls, no oneDNN LSTM."""
    torch.manual_seed(0)
    rows, H, V = 3, 8, 130
    layers = [
        (torch.randn(4 * H, H).bfloat16(), torch.randn(4 * H, H).bfloat16(), torch.randn(4 * H).bfloat16())
        for _ in range(2)
    ]
    output = (torch.randn(V, H).bfloat16(), torch.randn(V).bfloat16())
    gates_in = torch.randn(rows, 4 * H)
    hs, cs = [torch.randn(rows, H) for _ in range(2)], [torch.randn(rows, H) for _ in range(2)]
    hs2, cs2 = [h.clone() for h in hs], [c.clone() for c in cs]
    logits = HierarchicalMelodyVAE._step(gates_in, hs, cs, layers, output)
    x = None
    for k, (w_ih, w_hh, b) in enumerate(layers):  # the step as it was written before the addmm
        g = (gates_in if k == 0 else torch.addmm(b, x.bfloat16(), w_ih.T)) + hs2[k].bfloat16() @ w_hh.T
        i, f, gg, o = g.chunk(4, dim=-1)
        cs2[k] = torch.sigmoid(f) * cs2[k] + torch.sigmoid(i) * torch.tanh(gg)
        hs2[k] = torch.sigmoid(o) * torch.tanh(cs2[k])
        x = hs2[k]
    assert torch.equal(logits, torch.nn.functional.linear(x.bfloat16(), *output))


def test_an_unsteered_decode_in_blocks_of_rows_writes_what_one_block_would(monkeypatch):
    """The bars of an unsteered decode run in blocks (PARALLEL_ROWS) that stay in the caches; the
    uniforms are drawn for every row at once, so the melodies do not depend on the block size,
    also where a block ends inside a melody's bars. The weights are scaled up so that each bar's
    state and embedding decide its tokens (an untrained tiny model writes nearly the same melody
    for any z, and would hide a block reading another block's rows)."""
    from melody_lc.melody import model as model_module

    torch.manual_seed(1)
    model = HierarchicalMelodyVAE(PRESETS["tiny"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    z = torch.randn(7, PRESETS["tiny"].z_size)
    other = torch.randn(7, PRESETS["tiny"].z_size)

    def decode(latents, rows):
        monkeypatch.setattr(model_module, "PARALLEL_ROWS", rows)
        return [model.decode(latents, t, torch.Generator().manual_seed(2)) for t in (0.0, 0.5, 1.0)]

    whole = decode(z, 1_000_000)
    for rows in (16, 5):  # a matmul's last bit may depend on its row count on some CPUs: nearly all equal
        for a, b in zip(whole, decode(z, rows)):
            assert (a == b).float().mean() > 0.99
    for a, b in zip(whole, decode(other, 5)):  # the control: other latents write other melodies
        assert (a == b).float().mean() < 0.8
    assert not torch.equal(whole[1], whole[2])  # the temperature is applied


def test_a_steered_decode_runs_the_bars_at_once_where_every_constraint_allows(monkeypatch):
    """Constraints of the step and its own bar (a range, notes per bar) decode the bars at once, in
    blocks of whole melodies, and keep their rules; the stats come back one row per melody. A leap
    crosses bar lines: in sequence, 256 steps."""
    from melody_lc.melody import model as model_module
    from melody_lc.melody.steer import Steer
    from melody_lc.rules.constraints import Leap, Onsets, PitchRange

    torch.manual_seed(1)
    model = HierarchicalMelodyVAE(PRESETS["tiny"]).eval()
    z = torch.randn(5, PRESETS["tiny"].z_size)
    monkeypatch.setattr(model_module, "PARALLEL_ROWS", 32)  # blocks of 2 melodies: 3 blocks
    calls = []
    choose_bars = Steer.choose_bars
    monkeypatch.setattr(Steer, "choose_bars", lambda self, *a: calls.append(a[2]) or choose_bars(self, *a))
    low = torch.full((5,), 3)
    steer = Steer([("range", PitchRange(5, 60, 72)), ("density", Onsets(low, low + 1, per_bar=True))])
    tokens = model.decode(z, 1.0, torch.Generator().manual_seed(0), steer=steer)
    assert len(calls) == 3 * 16 and {(s.start, s.stop) for s in calls} == {(0, 32), (32, 64), (64, 80)}
    notes = tokens < 128
    assert ((tokens[notes] >= 60) & (tokens[notes] <= 72)).all()
    per_bar = notes.view(5, 16, 16).sum(2)
    assert ((per_bar >= 3) & (per_bar <= 4)).all()
    stats = steer.stats
    assert stats.interventions.shape == (5,) and stats.by_rule["range"].shape == (5,) and len(stats.blocked_by) == 5
    assert (stats.interventions <= stats.by_rule["range"] + stats.by_rule["density"]).all()  # a step both forbid: once
    assert stats.interventions.sum() > 0 and not stats.dead_end.any()
    calls.clear()
    steer = Steer([("leap", Leap(0, 2))])
    tokens = model.decode(z, 1.0, torch.Generator().manual_seed(0), steer=steer)
    assert not calls and steer.stats.interventions.shape == (5,)
    pitches = [row[row < 128] for row in tokens]
    assert all((p[1:] - p[:-1]).abs().max() <= 2 for p in pitches if len(p) > 1)  # across bar lines too


def test_the_parallel_model_decodes_every_step_from_z_alone():
    """Nothing is fed back: teacher-forced logits do not depend on the tokens, the greedy decode is
    their argmax, sampling is reproducible, and a steered decode keeps to its constraint."""
    from melody_lc.melody.steer import Steer
    from melody_lc.rules.constraints import PitchRange

    torch.manual_seed(1)
    model = build_model(TINY_PARALLEL).eval()
    z = torch.randn(5, TINY_PARALLEL.z_size)
    greedy = model.decode(z, temperature=0)
    assert greedy.shape == (5, 256)
    assert torch.equal(model.decode_logits(z, _tokens(5)), model.decode_logits(z, _tokens(5, seed=1)))
    assert torch.equal(model.decode_logits(z, greedy).argmax(-1), greedy)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.sample(3, 1.0, g1), model.sample(3, 1.0, g2))
    free = model.decode(z, 1.0, torch.Generator().manual_seed(0))
    steer = Steer([("range", PitchRange(5, 60, 72))])
    kept = model.decode(z, 1.0, torch.Generator().manual_seed(0), steer=steer)
    notes, kept_notes = free[free < 128], kept[kept < 128]
    assert ((notes < 60) | (notes > 72)).any()  # unsteered, the untrained model writes anything
    assert ((kept_notes >= 60) & (kept_notes <= 72)).all() and steer.stats.interventions.sum() > 0
    with pytest.raises(ValueError, match="patches"):
        build_model(VAEConfig.from_dict({**TINY_PARALLEL.to_dict(), "encoder": "flat"}))
    with pytest.raises(ValueError, match="decoder"):
        build_model(VAEConfig.from_dict({**TINY_PARALLEL.to_dict(), "decoder": "transformer"}))
    with pytest.raises(ValueError, match="LSTM decoder"):
        build_model(VAEConfig.from_dict({**TINY_PARALLEL.to_dict(), "token_dropout": 0.5}))


def test_the_parallel_models_head_reads_the_tokens_before_each_step_and_starts_as_the_parallel_model():
    """head_size > 0: an LSTM over the steps corrects the parallel logits from the tokens before each
    step (none after it); its output starts at zero; the step-by-step decode is the teacher-forced
    computation; token_dropout hides the tokens in training only."""
    from melody_lc.melody.steer import Steer
    from melody_lc.rules.constraints import PitchRange

    cfg = TINY_MODELS["parallel+head"]
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    z, tokens = torch.randn(5, cfg.z_size), _tokens(5)
    parallel = model.bar_logits(model.bar_embeddings(z))
    assert torch.equal(model.decode_logits(z, tokens), parallel)  # as the parallel model, until it learns
    with torch.no_grad():
        torch.nn.init.normal_(model.head_out.weight)
    changed = tokens.clone()
    changed[:, 100] = (tokens[:, 100] + 1) % 130
    a, b = model.decode_logits(z, tokens), model.decode_logits(z, changed)
    assert torch.equal(a[:, :101], b[:, :101]) and not torch.allclose(a[:, 101:], b[:, 101:])
    greedy = model.decode(z, temperature=0)
    with torch.no_grad():  # the decode's tokens are inference tensors
        assert torch.equal(model.decode_logits(z, greedy).argmax(-1), greedy)
    assert not torch.equal(greedy, parallel.argmax(-1))  # the head changed what is written
    steer = Steer([("range", PitchRange(5, 60, 72))])
    kept = model.decode(z, 1.0, torch.Generator().manual_seed(0), steer=steer)
    assert ((kept[kept < 128] >= 60) & (kept[kept < 128] <= 72)).all()
    hidden = build_model(VAEConfig.from_dict({**cfg.to_dict(), "token_dropout": 1.0}))
    hidden.load_state_dict(model.state_dict())
    hidden.train()
    torch.manual_seed(0)
    assert torch.equal(hidden.decode_logits(z, tokens), hidden.decode_logits(z, changed))
    hidden.eval()
    assert not torch.equal(hidden.decode_logits(z, tokens), hidden.decode_logits(z, changed))


def test_bf16_decoding_casts_once_and_computes_what_autocast_computes():
    """The step loop's weights are cast to bf16 once per decode: the same arithmetic as autocast
    casting them at every step, so the same tokens, unsteered (bars at once) and steered (a range:
    bars at once; a leap: in sequence)."""
    from melody_lc.melody.hardware import bf16_lstm_works
    from melody_lc.melody.steer import Steer
    from melody_lc.rules.constraints import Leap, PitchRange

    if not bf16_lstm_works():
        pytest.skip("this CPU has no bf16 LSTM (AVX2 only): decoding never uses bf16 here")
    torch.manual_seed(1)
    model = HierarchicalMelodyVAE(PRESETS["tiny"]).eval()
    z = torch.randn(6, PRESETS["tiny"].z_size)
    for make in (
        lambda: None,
        lambda: Steer([("range", PitchRange(6, 60, 72))]),
        lambda: Steer([("leap", Leap(0, 5))]),
    ):
        steer = make()
        cast_once = model.decode(z, 0.7, torch.Generator().manual_seed(4), bf16=True, steer=steer)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            every_step = model.decode(z, 0.7, torch.Generator().manual_seed(4), bf16=False, steer=make())
        assert torch.equal(cast_once, every_step)
    fp32 = model.decode(z, 0.7, torch.Generator().manual_seed(4))
    assert not torch.equal(fp32, cast_once)  # bf16 really is another arithmetic: the check can fail


@EVERY_DECODER
def test_checkpoint_roundtrip_fp16_and_config(tmp_path, config):
    model = build_model(config)
    checkpoint.save(
        tmp_path / "m", "melody-vae", model.config.to_dict(), model.state_dict(), meta={"x": 1}, dtype=torch.float16
    )
    loaded, meta = load_model(tmp_path / "m")
    assert loaded.config == model.config and meta == {"x": 1}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().float())
    with pytest.raises(checkpoint.CheckpointError, match="expected"):
        checkpoint.load(tmp_path / "m", "image-vae")
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint"):
        checkpoint.load(tmp_path / "nothing")


def test_damaged_weights_are_an_error_not_a_crash(tmp_path):
    model = HierarchicalMelodyVAE(PRESETS["tiny"])
    d = checkpoint.save(tmp_path / "m", "melody-vae", model.config.to_dict(), model.state_dict())
    data = (d / "weights.safetensors").read_bytes()
    (d / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="unreadable"):
        checkpoint.load(d)


def test_a_swap_cut_short_falls_back_to_the_previous_checkpoint(tmp_path):
    model = HierarchicalMelodyVAE(PRESETS["tiny"])
    d = checkpoint.save(tmp_path / "m", "melody-vae", model.config.to_dict(), model.state_dict(), meta={"v": 1})
    (d / "evaluation.json").write_text("{}")  # a user's file beside the checkpoint
    os.replace(d, tmp_path / ".m.old")  # as if killed between the two renames of the next save
    assert checkpoint.load(tmp_path / "m")["meta"] == {"v": 1}
    checkpoint.save(tmp_path / "m", "melody-vae", model.config.to_dict(), model.state_dict(), meta={"v": 2})
    assert checkpoint.load(tmp_path / "m")["meta"] == {"v": 2} and not (tmp_path / ".m.old").exists()
    assert (tmp_path / "m" / "evaluation.json").read_text() == "{}"


def test_saving_keeps_a_users_files_and_never_replaces_other_work(tmp_path):
    model = HierarchicalMelodyVAE(PRESETS["tiny"])
    args = ("melody-vae", model.config.to_dict(), model.state_dict())
    real = tmp_path / "real"
    checkpoint.save(real, *args, meta={"v": 1})
    (real / "notes").mkdir()
    (real / "notes" / "n.txt").write_text("kept")
    link = tmp_path / "link"
    link.symlink_to(real)
    for v in (2, 3):  # through a symlink: the link stays a link, the folder it names is replaced
        checkpoint.save(link, *args, meta={"v": v})
        assert link.is_symlink() and checkpoint.load(real)["meta"] == {"v": v}
        assert (real / "notes" / "n.txt").read_text() == "kept"
    with pytest.raises(checkpoint.CheckpointError, match="not a 'fit'"):
        checkpoint.save(real, "fit", {}, {})
    run = checkpoint.save(tmp_path / "run", *args, state={"step": 1})
    with pytest.raises(checkpoint.CheckpointError, match="training run"):
        checkpoint.check_target(run, "melody-vae", training=False)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "song.mid").write_bytes(b"x")
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint"):
        checkpoint.save(tmp_path / "own", *args)
    assert [f.name for f in (tmp_path / "own").iterdir()] == ["song.mid"]


def test_damaged_training_state_is_an_error_not_a_crash(tmp_path):
    model = HierarchicalMelodyVAE(PRESETS["tiny"])
    d = checkpoint.save(
        tmp_path / "run",
        "melody-vae",
        model.config.to_dict(),
        model.state_dict(),
        state={"step": 1},
        state_tensors={"x": torch.zeros(2)},
    )
    (d / "state.safetensors").write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="damaged training state"):
        checkpoint.load(d, with_state=True)


def test_presets_rebuild_from_their_dict():
    for cfg in PRESETS.values():
        assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert (
        PRESETS["paper"].encoder_size == 2048
        and PRESETS["paper"].decoder_size == 1024
        and PRESETS["paper"].z_size == 512
    )
    with pytest.raises(ValueError):
        VAEConfig.from_dict({"z_size": 4, "bogus": 1})


def test_a_field_added_later_leaves_older_configs_as_they_were():
    """bar_carry came after models were shipped: at False a config is written (and fingerprinted
    for the fit caches) exactly as before; at True it is written and read back."""
    assert "bar_carry" not in PRESETS["default"].to_dict()
    carry = VAEConfig.from_dict({**PRESETS["default"].to_dict(), "bar_carry": True})
    assert carry.to_dict()["bar_carry"] is True and VAEConfig.from_dict(carry.to_dict()) == carry


def test_token_dropout_hides_the_previous_tokens_in_training_only():
    """At token_dropout 1 a training pass reads no previous token (the logits cannot depend on the
    tokens fed in); evaluation and decoding always feed them."""
    torch.manual_seed(0)
    config = VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), "token_dropout": 1.0})
    model = HierarchicalMelodyVAE(config)
    z = torch.randn(2, config.z_size)
    a, b = torch.randint(0, 130, (2, 256)), torch.randint(0, 130, (2, 256))
    model.train()
    assert torch.equal(model.decode_logits(z, a), model.decode_logits(z, b))
    model.eval()
    assert not torch.allclose(model.decode_logits(z, a), model.decode_logits(z, b))
    half = HierarchicalMelodyVAE(VAEConfig.from_dict({**config.to_dict(), "token_dropout": 0.5})).train()
    half.load_state_dict(model.state_dict())
    assert not torch.allclose(half.decode_logits(z, a), half.decode_logits(z, b))
    for later in ("token_dropout", "decoder"):  # added later: old configs are written as they were
        assert later not in PRESETS["default"].to_dict()


def test_draw_samples_the_classes_in_proportion_to_their_weights():
    """Every decode samples through steer.draw: it must be exactly a categorical draw."""
    from melody_lc.melody.steer import draw

    g = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(130, generator=g) * 2, -1)
    weights[::3] = 0.0  # never drawn
    n = 200_000
    got = draw((weights * 7.5).expand(n, -1), g)  # the weights need not sum to one
    share = torch.bincount(got, minlength=130).double() / n
    expected = weights.double() / weights.sum()
    assert (share[::3] == 0).all()
    sd = (expected * (1 - expected) / n).sqrt()
    assert ((share - expected).abs() <= 5 * sd + 1e-9).all()  # within five standard errors, every class
    one_hot = torch.zeros(4, 130)
    one_hot[torch.arange(4), torch.tensor([0, 5, 128, 129])] = 1.0
    assert draw(one_hot, g).tolist() == [0, 5, 128, 129]  # the first and the last class too
    a, b = (
        draw(weights.expand(64, -1), torch.Generator().manual_seed(3)),
        draw(weights.expand(64, -1), torch.Generator().manual_seed(3)),
    )
    assert torch.equal(a, b)
