"""Training: exact resume, transposition, DDP under torchrun (gloo, 2 processes) against one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from melody_lc.melody.model import PRESETS
from melody_lc.melody.train import TrainConfig, Trainer, transpose_batch


def _windows(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, 256)) < 0.3, rng.integers(50, 80, (n, 256)), 128).astype(np.uint8)


def _train(out, steps, resume=False, **kw):
    cfg = TrainConfig(steps=steps, batch_size=8, precision="fp32", log_every=1, **kw)
    t = Trainer(_windows(), PRESETS["tiny"], cfg, out, resume=resume)
    t.run()
    return t


def test_resume_continues_exactly(tmp_path):
    straight = _train(tmp_path / "a", 7)
    _train(tmp_path / "b", 3)
    resumed = _train(tmp_path / "b", 7, resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["loss"] for e in straight.log] == [e["loss"] for e in resumed.log]
    assert resumed.step == 7 and (tmp_path / "b" / "log.jsonl").read_text().count("\n") == 7


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


TORCHRUN_SCRIPT = r"""
import numpy as np, sys, torch
from melody_lc.melody.model import PRESETS
from melody_lc.melody.train import TrainConfig, Trainer
rng = np.random.default_rng(0)
w = np.where(rng.random((96, 256)) < 0.3, rng.integers(50, 80, (96, 256)), 128).astype(np.uint8)
t = Trainer(w, PRESETS["tiny"], TrainConfig(steps=4, batch_size=8, precision="fp32", log_every=1), sys.argv[1])
t.run()
"""


def test_ddp_two_processes_equal_one_process(tmp_path):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    script = tmp_path / "ddp_train.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([torchrun, "--standalone", "--nproc-per-node=2", str(script), str(tmp_path / "ddp")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    single = _train(tmp_path / "single", 4)
    from melody_lc.melody.train import load_model

    ddp_model, meta = load_model(tmp_path / "ddp")
    assert meta["steps"] == 4
    ref = single.model.state_dict()
    for k, v in ddp_model.state_dict().items():
        torch.testing.assert_close(v, ref[k], rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(v, p) for v, p in zip(ddp_model.state_dict().values(), _fresh_params(), strict=True))


def _fresh_params():
    torch.manual_seed(0)
    from melody_lc.melody.model import HierarchicalMelodyVAE

    return list(HierarchicalMelodyVAE(PRESETS["tiny"]).state_dict().values())


def test_too_little_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(_windows(4), PRESETS["tiny"], TrainConfig(batch_size=8), tmp_path / "x")
