"""Training: exact resume (also after Ctrl-C mid-step), transposition, DDP under torchrun (gloo, 2
processes) against one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from melody_lc.checkpoint import CheckpointError
from melody_lc.melody.model import PRESETS, VAEConfig, kl_nats
from melody_lc.melody.train import TrainConfig, Trainer, load_model, transpose_batch
from tests.conftest import TINY_MODELS


def _windows(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, 256)) < 0.3, rng.integers(50, 80, (n, 256)), 128).astype(np.uint8)


def _train(out, steps, resume=False, model=PRESETS["tiny"], **kw):
    cfg = TrainConfig(**{"steps": steps, "batch_size": 8, "precision": "fp32", "log_every": 1, **kw})
    t = Trainer(_windows(), model, cfg, out, resume=resume)
    t.run()
    return t


@pytest.mark.parametrize("model", list(TINY_MODELS.values()), ids=list(TINY_MODELS))
def test_resume_continues_exactly(tmp_path, model):
    straight = _train(tmp_path / "a", 7, model=model)
    _train(tmp_path / "b", 3, model=model)
    resumed = _train(tmp_path / "b", 7, resume=True, model=model)
    assert type(load_model(tmp_path / "b")[0]) is type(straight.model)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["loss"] for e in straight.log] == [e["loss"] for e in resumed.log]
    assert resumed.step == 7 and (tmp_path / "b" / "log.jsonl").read_text().count("\n") == 7


def test_a_compacted_checkpoint_is_two_thirds_the_size_and_resumes_close_to_the_exact_run(tmp_path):
    from safetensors.torch import load_file as read_tensors

    from melody_lc.cli import main

    straight = _train(tmp_path / "a", 7)
    _train(tmp_path / "b", 3)
    size = (tmp_path / "b" / "state.safetensors").stat().st_size
    assert main(["train", "--out", str(tmp_path / "b"), "--compact"]) == 0
    moments = read_tensors(tmp_path / "b" / "state.safetensors")
    assert {v.dtype for k, v in moments.items() if k.endswith("exp_avg_sq")} == {torch.bfloat16}
    assert {v.dtype for k, v in moments.items() if k.endswith(".step")} == {torch.float32}
    assert (tmp_path / "b" / "state.safetensors").stat().st_size < 0.55 * size  # the moments halved
    assert (tmp_path / "b" / "log.jsonl").read_text().count("\n") == 3
    resumed = _train(tmp_path / "b", 7, resume=True)
    assert resumed.resumed_compact and resumed.step == 7
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)  # not bit for bit ...
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)  # ... but close
    again = _train(tmp_path / "b", 8, resume=True)  # the next checkpoint is exact again
    assert not again.resumed_compact


def test_transposition_stays_in_range():
    rng = np.random.default_rng(0)
    t = np.full((3, 256), 128)
    t[0, 0], t[0, 5] = 2, 125  # can move only -2..+2
    t[1, 0] = 60
    t[2, 0] = 129  # no notes
    shifted = np.stack([transpose_batch(t, 5, rng) for _ in range(200)])
    notes0 = shifted[:, 0, [0, 5]]
    assert notes0.min() >= 0 and notes0.max() <= 127
    assert set(notes0[:, 0] - 2) <= set(range(-2, 3)) and len(set(shifted[:, 1, 0])) == 11
    assert (shifted[:, 2] == t[2]).all()


TRAIN_SCRIPT = r"""
import json, signal, sys
import numpy as np
from melody_lc.melody.model import PRESETS, VAEConfig
from melody_lc.melody.train import TrainConfig, Trainer
out, steps, resume, free_bits = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume", float(sys.argv[4])
rng = np.random.default_rng(0)
w = np.where(rng.random((96, 256)) < 0.3, rng.integers(50, 80, (96, 256)), 128).astype(np.uint8)
model = VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), "free_bits": free_bits})
t = Trainer(w, model, TrainConfig(steps=steps, batch_size=8, precision="fp32", log_every=1, checkpoint_minutes=0),
            out, resume=resume, progress=lambda entry: print("step", entry["step"], flush=True))
try:
    t.run()
except KeyboardInterrupt:
    sys.exit(130)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C that comes once the run is over changes nothing
"""


def _script(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    return script


ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")  # the same arithmetic in every process compared


def test_ctrl_c_mid_step_then_resume_ends_with_the_uninterrupted_weights(tmp_path):
    """SIGINT at arbitrary moments (mostly mid-step: forward and backward are most of the time) while
    a checkpoint is written after every step; resumed each time, the run ends bit for bit where an
    uninterrupted run ends."""
    script, steps, free_bits = _script(tmp_path), 30, str(PRESETS["tiny"].free_bits)
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "straight"), str(steps), "new", free_bits],
        env=ONE_THREAD,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rng = np.random.default_rng(1)
    out, interrupted, mode = tmp_path / "interrupted", 0, "new"
    for _ in range(40):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(out), str(steps), mode, free_bits],
            env=ONE_THREAD,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(rng.integers(1, 6)):  # a few whole steps (the first one writes a checkpoint) ...
            if not proc.stdout.readline():
                break
        time.sleep(rng.uniform(0.0, 0.02))  # ... then a signal somewhere in the next one
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130), err[-2000:]
        mode = "resume"
        if proc.returncode == 0:
            break
        interrupted += 1
    assert interrupted >= 3 and proc.returncode == 0
    a, meta_a = load_model(tmp_path / "straight")
    b, meta_b = load_model(out)
    assert meta_a["steps"] == meta_b["steps"] == steps
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    straight_log = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    resumed_log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in straight_log] == [e["loss"] for e in resumed_log]


def _straddling_free_bits() -> float:
    """Free bits between the KL of one DDP shard of the first batch and the whole batch's KL."""
    t = Trainer(_windows(), PRESETS["tiny"], TrainConfig(batch_size=8, precision="fp32"), "unused")
    tokens = torch.from_numpy(t._next_batch())
    eps = torch.randn(len(tokens), PRESETS["tiny"].z_size, generator=t.noise)
    with torch.no_grad():
        _, mu, sigma = t.model(tokens, eps=eps)
    shards = [float(kl_nats(mu[r::2], sigma[r::2])) / np.log(2) for r in (0, 1)]
    whole = float(kl_nats(mu, sigma)) / np.log(2)
    return (whole + min(shards)) / 2 if abs(whole - min(shards)) > 1e-4 else (whole + max(shards)) / 2


def test_ddp_two_processes_equal_one_process(tmp_path):
    """Under torchrun (gloo, 2 processes) each process takes half of every batch; the weights after 4
    steps equal one process's. The free bits are set so that on the first batch the two halves' KL
    fall on both sides of them: the threshold must be judged on the whole batch's KL."""
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    script, free_bits = _script(tmp_path), str(_straddling_free_bits())
    res = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node=2", str(script), str(tmp_path / "ddp"), "4", "new", free_bits],
        capture_output=True,
        text=True,
        env=ONE_THREAD,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "single"), "4", "new", free_bits],
        capture_output=True,
        text=True,
        env=ONE_THREAD,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ddp_model, meta = load_model(tmp_path / "ddp")
    single, _ = load_model(tmp_path / "single")
    assert meta["steps"] == 4
    ref = single.state_dict()
    for k, v in ddp_model.state_dict().items():
        torch.testing.assert_close(v, ref[k], rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(v, p) for v, p in zip(ddp_model.state_dict().values(), _fresh_params(), strict=True))
    ddp_log = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    single_log = [json.loads(x) for x in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    for d, s in zip(ddp_log, single_log, strict=True):  # the log covers the whole batch, not rank 0's half
        assert d["accuracy"] == pytest.approx(s["accuracy"], abs=1e-4) and d["recon"] == pytest.approx(
            s["recon"], rel=1e-4
        )


def test_a_resumed_log_reads_as_the_uninterrupted_one(tmp_path):
    """Stopped (as by Ctrl-C) between two log entries and resumed, the entry that spans the stop
    averages the same steps as in an uninterrupted run."""

    class StoppedAfterStep4(Trainer):
        def train_step(self):
            terms = super().train_step()
            if self.step == 4:
                self._stop.requested = True  # what the signal handler does between steps
            return terms

    straight = _train(tmp_path / "a", 7, log_every=3)
    config = TrainConfig(steps=7, batch_size=8, precision="fp32", log_every=3)
    with pytest.raises(KeyboardInterrupt):
        StoppedAfterStep4(_windows(), PRESETS["tiny"], config, tmp_path / "b").run()
    resumed = _train(tmp_path / "b", 7, resume=True, log_every=3)
    assert [e["step"] for e in straight.log] == [e["step"] for e in resumed.log] == [3, 6, 7]
    for a, b in zip(straight.log, resumed.log, strict=True):
        assert {k: v for k, v in a.items() if k != "tokens_per_s"} == {
            k: v for k, v in b.items() if k != "tokens_per_s"
        }


def test_learning_rate_decays_to_its_floor_and_gradients_are_clipped(tmp_path):
    t = Trainer(
        _windows(), PRESETS["tiny"], TrainConfig(steps=3, batch_size=8, precision="fp32", clip=0.5), tmp_path / "a"
    )
    assert t.lr_at(0) == 1e-3 and t.lr_at(1000) == pytest.approx(1e-3 * 0.9999**1000)
    assert t.lr_at(10**6) == t.config.min_lr
    for _ in range(2):
        terms = t.train_step()
        norm = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in t.model.parameters() if p.grad is not None])
        )
        assert terms["grad_norm"] > 0.5 and float(norm) == pytest.approx(0.5, rel=1e-3)  # clipped to 0.5
        assert t.opt.param_groups[0]["lr"] == terms["lr"] == t.lr_at(t.step - 1)


def test_precision_choice(tmp_path):
    from melody_lc.melody.errors import PrecisionError
    from melody_lc.melody.hardware import bf16_lstm_works, cpu_has_fast_bf16, use_bf16

    cpu = torch.device("cpu")
    assert use_bf16("auto", cpu) == (cpu_has_fast_bf16() and bf16_lstm_works()) and not use_bf16("fp32", cpu)
    with pytest.raises(ValueError, match="precision"):
        use_bf16("fp8", cpu)
    if not bf16_lstm_works():  # an AVX2-only CPU: asking for bf16 is a user error, never a traceback
        with pytest.raises(PrecisionError, match="fp32"):
            use_bf16("bf16", cpu)
        with pytest.raises(PrecisionError):
            Trainer(_windows(), PRESETS["tiny"], TrainConfig(steps=1, batch_size=8, precision="bf16"), tmp_path / "a")
        return
    assert use_bf16("bf16", cpu)
    t = Trainer(_windows(), PRESETS["tiny"], TrainConfig(steps=1, batch_size=8, precision="bf16"), tmp_path / "a")
    assert t.bf16
    terms = t.train_step()  # a bf16 step trains and stays finite
    assert np.isfinite(terms["loss"]) and all(torch.isfinite(p).all() for p in t.model.parameters())


def test_the_log_holds_the_loss_terms(tmp_path):
    log = _train(tmp_path / "a", 3).log
    assert len(log) == 3
    for entry in log:
        assert {"loss", "recon", "kl_bits", "kl_term", "beta", "accuracy"} <= set(entry)
        assert entry["loss"] == pytest.approx(entry["recon"] + entry["kl_term"], abs=1e-3)


def test_resuming_with_other_run_settings_is_refused(tmp_path):
    _train(tmp_path / "a", 2)
    with pytest.raises(CheckpointError, match="batch_size 8"):
        Trainer(
            _windows(),
            PRESETS["tiny"],
            TrainConfig(steps=4, batch_size=16, precision="fp32"),
            tmp_path / "a",
            resume=True,
        )
    other = VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), "z_size": 8})
    with pytest.raises(CheckpointError, match="another configuration"):
        Trainer(_windows(), other, TrainConfig(steps=4, batch_size=8, precision="fp32"), tmp_path / "a", resume=True)


def _fresh_params():
    torch.manual_seed(0)
    from melody_lc.melody.model import HierarchicalMelodyVAE

    return list(HierarchicalMelodyVAE(PRESETS["tiny"]).state_dict().values())


def test_too_little_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(_windows(4), PRESETS["tiny"], TrainConfig(batch_size=8), tmp_path / "x")


def test_a_run_continues_another_with_a_change_that_keeps_the_weights(tmp_path, capsys):
    """``train --from``: the other run's weights, optimizer and step, with free bits, beta, dropout
    or bar_carry changed; a change of any weight's shape is refused."""
    from melody_lc.cli import main

    a = _train(tmp_path / "a", 3)
    carry = VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), "bar_carry": True, "free_bits": 16.0})
    cfg = TrainConfig(steps=5, batch_size=8, precision="fp32", log_every=1)
    b = Trainer(_windows(), carry, cfg, tmp_path / "b", start_from=tmp_path / "a")
    assert b.step == 3 and all(torch.equal(v, a.model.state_dict()[k]) for k, v in b.model.state_dict().items())
    b.run()
    model, meta = load_model(tmp_path / "b")
    assert model.config.bar_carry and meta["steps"] == 5
    assert meta["continued_from"] == {"run": "a", "step": 3, "changed": {"free_bits": 16.0, "bar_carry": True}}
    assert load_model(tmp_path / "a")[1]["steps"] == 3  # the run continued from is left as it was
    wider = VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), "decoder_size": 64})
    with pytest.raises(CheckpointError, match="only free_bits"):
        Trainer(_windows(), wider, cfg, tmp_path / "c", start_from=tmp_path / "a")
    args = ["train", "--from", str(tmp_path / "a"), "--out", str(tmp_path / "d"), "--model-config", '{"z_size": 8}']
    assert main(args) == 2
    assert "may change only free_bits, beta, dropout, bar_carry" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_new_run_starts_from_a_models_weights_and_may_give_the_parallel_decoder_a_head(tmp_path, capsys):
    """``train --init``: the weights of a run or of a shipped (float16) model start a new run at step
    0 with a fresh optimizer; the parallel decoder may gain a head, which starts as nothing, so the
    grown model computes what the other did; any other change of a weight's shape is refused."""
    from melody_lc import checkpoint
    from melody_lc.cli import main
    from melody_lc.melody.model import ADDED_WEIGHTS
    from melody_lc.melody.train import KIND

    parallel = TINY_MODELS["parallel"]
    a = _train(tmp_path / "a", 3, model=parallel)
    shipped = tmp_path / "shipped"  # as `melody-lc export` writes it: float16 weights, no training state
    checkpoint.save(shipped, KIND, parallel.to_dict(), a.model.state_dict(), meta={"steps": 3}, dtype=torch.float16)
    headed = VAEConfig.from_dict({**parallel.to_dict(), "head_size": 16, "token_dropout": 0.5})
    cfg = TrainConfig(steps=2, batch_size=8, precision="fp32", log_every=1)
    tokens = torch.from_numpy(_windows(4, seed=1).astype(np.int64))
    z = torch.randn(4, parallel.z_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = a.model.eval().decode_logits(z, tokens)
    for source, tol in ((tmp_path / "a", 0.0), (shipped, 5e-2)):
        b = Trainer(_windows(), headed, cfg, tmp_path / f"b-{source.name}", init_from=source)
        assert b.step == 0 and not b.opt.state  # a new run: step 0, nothing in the optimizer
        with torch.no_grad():
            after = b.model.eval().decode_logits(z, tokens)
        assert (after - before).abs().max().item() <= tol  # the head adds nothing yet (float16: rounding)
        b.model.train()
        b.run()
        model, meta = load_model(tmp_path / f"b-{source.name}")
        added = sum(k.startswith(ADDED_WEIGHTS["head_size"]) for k in model.state_dict())
        assert model.config.head_size == 16 and meta["steps"] == 2 and added > 0
        assert meta["initialised_from"] == {
            "model": source.name,
            "steps": 3,
            "changed": {"token_dropout": 0.5, "head_size": 16},
            "added_weights": added,
        }
    wider = VAEConfig.from_dict({**parallel.to_dict(), "decoder_size": 64})
    with pytest.raises(CheckpointError, match="may change only free_bits"):
        Trainer(_windows(), wider, cfg, tmp_path / "c", init_from=tmp_path / "a")
    args = ["train", "--init", str(shipped), "--out", str(tmp_path / "d"), "--model-config", '{"z_size": 8}']
    assert main(args) == 2
    assert (
        "may change only free_bits, beta, dropout, bar_carry, token_dropout and add head_size"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "d").exists()
    assert main(["train", "--init", str(tmp_path / "nothing"), "--out", str(tmp_path / "e")]) == 2
    assert "no model to start from" in capsys.readouterr().err
