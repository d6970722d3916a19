"""train / evaluate / sample / reconstruct / interpolate as a user runs them (tiny preset)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from melody_lc.melody import Melody
from tests.cli.test_cli import run_cli
from tests.conftest import scale_notes, write_midi
from tests.melody.test_dataset import make_bad_files


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A dataset of 60 small MIDI tunes and a tiny model trained on it for a few steps."""
    root = tmp_path_factory.mktemp("model_cli")
    src = root / "midi"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        notes = [(int(55 + rng.integers(0, 20)), s, s + 2, 90) for s in range(0, 16 * 17, 2)]
        write_midi(src / f"t{i:02d}.mid", [notes])
    data = root / "ds"
    res = run_cli("data", "build", "--midi-dir", str(src), "--out", str(data), "--quiet", "--workers", "1")
    assert res.returncode == 0, res.stderr
    model = root / "model"
    res = run_cli("train", "--preset", "tiny", "--data", str(data), "--steps", "6", "--batch-size", "8",
                  "--out", str(model), "--precision", "fp32", "--quiet")
    assert res.returncode == 0, res.stderr
    return root, data, model


def test_train_writes_a_checkpoint_and_refuses_to_overwrite(tiny_run):
    root, data, model = tiny_run
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["kind"] == "melody-vae" and cfg["meta"]["steps"] == 6 and cfg["meta"]["preset"] == "tiny"
    assert len((model / "log.jsonl").read_text().splitlines()) >= 1
    res = run_cli("train", "--preset", "tiny", "--data", str(data), "--steps", "8", "--out", str(model), "--quiet")
    assert res.returncode == 2 and "--resume" in res.stderr
    res = run_cli("train", "--preset", "huge", "--data", str(data), "--out", str(root / "x"))
    assert res.returncode == 2 and "unknown preset" in res.stderr
    res = run_cli("train", "--data", str(root / "nowhere"), "--out", str(root / "x"))
    assert res.returncode == 2 and "data build" in res.stderr


def test_sample_reconstruct_interpolate_write_midi(tiny_run, tmp_path):
    root, data, model = tiny_run
    res = run_cli("sample", "--model", str(model), "-n", "3", "--out", str(tmp_path / "s"), "--seed", "1", "--program", "73")
    assert res.returncode == 0, res.stderr
    files = sorted((tmp_path / "s").glob("*.mid"))
    assert len(files) == 3
    import pretty_midi

    assert pretty_midi.PrettyMIDI(str(files[0])).instruments[0].program == 73

    short = write_midi(tmp_path / "short.mid", [scale_notes(4)])
    long = write_midi(tmp_path / "long.mid", [scale_notes(20)])
    res = run_cli("reconstruct", str(short), "--model", str(model))
    assert res.returncode == 0, res.stderr
    assert "4 bars, padded with silence to 16" in res.stderr
    assert (tmp_path / "short.reconstructed.mid").exists()
    Melody.from_midi_file(tmp_path / "short.reconstructed.mid")
    res = run_cli("interpolate", str(short), str(long), "--steps", "4", "--model", str(model), "--out", str(tmp_path / "i"))
    assert res.returncode == 0, res.stderr
    assert "20 bars, cut to the first 16" in res.stderr
    assert len(list((tmp_path / "i").glob("interp-*.mid"))) == 4


def test_bad_input_is_one_line_exit_2(tiny_run, tmp_path):
    root, data, model = tiny_run
    bad = make_bad_files(tmp_path / "bad")
    res = run_cli("reconstruct", str(bad["text.mid"]), "--model", str(model))
    assert res.returncode == 2 and "not a MIDI file" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("interpolate", str(bad["truncated.mid"]), str(bad["empty.mid"]), "--model", str(model))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    res = run_cli("sample", "--model", str(tmp_path / "nomodel"), "-n", "2")
    assert res.returncode == 2 and "not a checkpoint" in res.stderr
    res = run_cli("sample", "--model", str(model), "-n", "0")
    assert res.returncode == 2
    res = run_cli("sample", "--model", str(model), "--program", "300")
    assert res.returncode == 2 and "0-127" in res.stderr


def test_evaluate_prints_every_figure(tiny_run, tmp_path):
    root, data, model = tiny_run
    out = tmp_path / "eval.json"
    res = run_cli("evaluate", "--model", str(model), "--data", str(data), "--split", "validation",
                  "--samples", "16", "--json", str(out))
    assert res.returncode == 0, res.stderr
    result = json.loads(out.read_text())
    for key in ("teacher_forced_accuracy", "teacher_forced_note_accuracy", "free_running_accuracy",
                "free_running_note_accuracy", "elbo_nats", "kl_bits"):
        assert key in result and np.isfinite(result[key])
    assert set(result["feature_overlap"]) == {"notes_per_bar", "pitch_range", "intervals", "in_key_share", "mean"}


def test_ctrl_c_saves_and_resume_continues(tiny_run, tmp_path):
    root, data, _ = tiny_run
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "melody_lc", "train", "--preset", "tiny", "--data", str(data), "--steps", "100000",
           "--batch-size", "8", "--out", str(out), "--precision", "fp32", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # "training tiny on ..." once the trainer runs
    assert first.startswith("training"), first
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    step = json.loads((out / "config.json").read_text())["meta"]["steps"]
    assert step > 0
    res = run_cli("train", "--preset", "tiny", "--data", str(data), "--steps", str(step + 3), "--batch-size", "8",
                  "--out", str(out), "--precision", "fp32", "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "config.json").read_text())["meta"]["steps"] == step + 3


def test_kill_9_never_corrupts_the_checkpoint(tiny_run, tmp_path):
    """SIGKILL at random moments while checkpoints are being written every step."""
    root, data, _ = tiny_run
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "melody_lc", "train", "--preset", "tiny", "--data", str(data), "--steps", "100000",
           "--batch-size", "8", "--out", str(out), "--precision", "fp32", "--quiet", "--checkpoint-minutes", "0"]
    from melody_lc.melody.train import load_model

    for delay in (3.0, 3.7, 4.3):
        from melody_lc.checkpoint import exists

        proc = subprocess.Popen(cmd + (["--resume"] if exists(out) else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model, meta = load_model(out)  # always loadable: the previous or the new checkpoint
        assert meta["steps"] >= 0


def test_export_writes_fp16_weights_and_a_model_card(tiny_run, tmp_path):
    root, data, model = tiny_run
    ev = tmp_path / "eval.json"
    assert run_cli("evaluate", "--model", str(model), "--data", str(data), "--split", "validation", "--samples", "8",
                   "--json", str(ev)).returncode == 0
    out = tmp_path / "shipped"
    res = run_cli("export", str(model), "--out", str(out), "--eval", str(ev))
    assert res.returncode == 0, res.stderr
    from safetensors import safe_open

    with safe_open(str(out / "weights.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(k).dtype.is_floating_point is False or str(f.get_tensor(k).dtype) == "torch.float16"
                   for k in f.keys())
    card = (out / "MODEL_CARD.md").read_text()
    figures = json.loads(ev.read_text())
    assert f"{figures['teacher_forced_accuracy']:.3f}" in card and "steps: 6 at batch 8" in card
    assert not (out / "state.safetensors").exists()  # no optimizer state in a shipped model
    res = run_cli("sample", "--model", str(out), "-n", "2", "--out", str(tmp_path / "s"))
    assert res.returncode == 0 and len(list((tmp_path / "s").glob("*.mid"))) == 2
    res = run_cli("export", str(model), "--out", str(out), "--eval", str(tmp_path / "missing.json"))
    assert res.returncode == 2 and "missing.json" in res.stderr
