"""train / evaluate / sample / reconstruct / interpolate as a user runs them (tiny preset)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from melody_lc.melody import Melody
from melody_lc.rules import load_rules
from tests.conftest import run_cli, scale_notes, write_midi
from tests.melody.test_dataset import make_bad_files


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
    res = run_cli(
        "sample", "--model", str(model), "-n", "3", "--out", str(tmp_path / "s"), "--seed", "1", "--program", "73"
    )
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
    res = run_cli(
        "interpolate", str(short), str(long), "--steps", "4", "--model", str(model), "--out", str(tmp_path / "i")
    )
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
    silent = write_midi(tmp_path / "silent.mid", [[]])
    drums = write_midi(tmp_path / "drums.mid", [scale_notes(4)], drum_tracks=(0,))
    cases = [
        (str(tmp_path / "missing.mid"), "no such file"),
        (str(tmp_path), "is a directory"),
        (str(silent), "no notes"),
        (str(drums), "no notes (drums are ignored)"),
        (str(bad["empty.mid"]), "empty"),
        (str(bad["truncated.mid"]), "truncated"),
    ]
    for path, why in cases:
        for cmd in (["reconstruct", path], ["interpolate", path, str(silent)]):
            res = run_cli(*cmd, "--model", str(model), "--out", str(tmp_path / "o"))
            assert res.returncode == 2 and why in res.stderr, (cmd, res.stderr)
            assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_a_folder_written_again_holds_only_the_new_run(tiny_run, tmp_path):
    """Melodies of an earlier run beyond the new run's count (and their audio) are removed, so that
    the folder agrees with its report; other files are left alone; a melody's name taken by a folder
    is an error before anything is written."""
    root, data, model = tiny_run
    out = tmp_path / "s"
    assert run_cli("sample", "--model", str(model), "-n", "3", "--out", str(out)).returncode == 0
    (out / "sample-0002.wav").write_bytes(b"")  # as --audio writes it
    (out / "sample-0000.flac").write_bytes(b"")  # the audio of a melody written anew: stale
    (out / "mine.mid").write_bytes(b"")
    (out / "sample-0009.txt").write_bytes(b"")  # not a melody's
    (out / "sample-0001.reconstructed.mid").write_bytes(b"")  # as `reconstruct` names it: not the run's
    res = run_cli("sample", "--model", str(model), "-n", "1", "--out", str(out))
    assert res.returncode == 0 and "wrote 1 melodies" in res.stdout
    assert (
        f"removed 4 files of an earlier run from {out}/: sample-0000 to sample-0002 (.flac, .mid, .wav)" in res.stdout
    )
    names = ["mine.mid", "sample-0000.mid", "sample-0001.reconstructed.mid", "sample-0009.txt"]
    assert sorted(p.name for p in out.iterdir()) == names
    (out / "sample-0001.mid").mkdir()
    before = (out / "sample-0000.mid").read_bytes()
    res = run_cli("sample", "--model", str(model), "-n", "2", "--seed", "5", "--out", str(out))
    assert res.returncode == 2 and "sample-0001.mid: is a folder" in res.stderr and "Traceback" not in res.stderr
    assert (out / "sample-0000.mid").read_bytes() == before  # nothing written


def test_a_tune_silent_for_its_first_16_bars_is_an_error(tiny_run, tmp_path):
    root, data, model = tiny_run
    late = write_midi(tmp_path / "late.mid", [[(60, 16 * 20, 16 * 20 + 4, 90)]])  # one note, in bar 21
    res = run_cli("reconstruct", str(late), "--model", str(model), "--out", str(tmp_path / "o.mid"))
    assert res.returncode == 2 and "no notes in its first 16 bars (the first is in bar 21)" in res.stderr
    assert not (tmp_path / "o.mid").exists()


def test_evaluate_prints_every_figure(tiny_run, tmp_path):
    root, data, model = tiny_run
    out = tmp_path / "eval.json"
    res = run_cli(
        "evaluate",
        "--model",
        str(model),
        "--data",
        str(data),
        "--split",
        "validation",
        "--samples",
        "16",
        "--json",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    result = json.loads(out.read_text())
    for key in (
        "teacher_forced_accuracy",
        "teacher_forced_note_accuracy",
        "free_running_accuracy",
        "free_running_note_accuracy",
        "elbo_nats",
        "kl_bits",
    ):
        assert key in result and np.isfinite(result[key])
    assert set(result["feature_overlap"]) == {"notes_per_bar", "pitch_range", "intervals", "in_key_share", "mean"}


def test_train_never_replaces_a_folder_that_is_not_a_checkpoint(tiny_run, tmp_path):
    """A checkpoint replaces its folder when it is saved: a folder with other files is refused at once,
    and files a user keeps beside a checkpoint are kept across saves."""
    root, data, model = tiny_run
    music = tmp_path / "music"
    music.mkdir()
    (music / "song.mid").write_bytes(b"precious")
    res = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(music),
        "--quiet",
    )
    assert res.returncode == 2 and "not a checkpoint" in res.stderr and (music / "song.mid").read_bytes() == b"precious"
    res = run_cli("export", str(model), "--out", str(music), "--eval", str(tmp_path / "none.json"))
    assert res.returncode == 2 and "not a checkpoint" in res.stderr and list(music.iterdir()) == [music / "song.mid"]
    run = tmp_path / "run"
    res = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(run),
        "--precision",
        "fp32",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    (run / "evaluation-test.json").write_text("{}")
    (run / "notes").mkdir()
    (run / "notes" / "a.txt").write_text("kept")
    # resuming takes the run's own preset, batch size and seed; an option that says otherwise is refused
    res = run_cli("train", "--data", str(data), "--steps", "4", "--batch-size", "16", "--out", str(run), "--resume")
    assert res.returncode == 2 and "was trained with --batch-size 8" in res.stderr
    res = run_cli("train", "--preset", "default", "--data", str(data), "--steps", "4", "--out", str(run), "--resume")
    assert res.returncode == 2 and "another configuration" in res.stderr
    res = run_cli("train", "--data", str(data), "--steps", "4", "--out", str(run), "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((run / "config.json").read_text())["meta"]["steps"] == 4
    assert (run / "evaluation-test.json").read_text() == "{}" and (run / "notes" / "a.txt").read_text() == "kept"


def test_progress_bar_shows_loss_accuracy_kl_and_speed(tiny_run, tmp_path):
    root, data, _ = tiny_run
    res = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        "50",
        "--batch-size",
        "8",
        "--out",
        str(tmp_path / "run"),
        "--precision",
        "fp32",
    )
    assert res.returncode == 0, res.stderr
    last = res.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert "50/50" in last and all(f"{k}=" in last for k in ("loss", "acc", "note_acc", "kl_bits", "tok_s")), last
    assert "GFLOP/s float32 matmul" in res.stderr and "tokens/s" in res.stdout  # the speed beside the machine's


def test_export_writes_the_evaluated_figures_into_the_model_card(tiny_run, tmp_path):
    root, data, model = tiny_run
    figures = tmp_path / "eval.json"
    res = run_cli(
        "evaluate",
        "--model",
        str(model),
        "--data",
        str(data),
        "--split",
        "validation",
        "--samples",
        "16",
        "--json",
        str(figures),
    )
    assert res.returncode == 0, res.stderr
    out = tmp_path / "shipped"
    res = run_cli("export", str(model), "--out", str(out), "--eval", str(figures), "--name", "tiny-test")
    assert res.returncode == 0, res.stderr
    _assert_card_matches(out / "MODEL_CARD.md", json.loads(figures.read_text()))
    from safetensors.torch import load_file

    assert all(
        v.dtype.itemsize == 2 for v in load_file(str(out / "weights.safetensors")).values() if v.is_floating_point()
    )
    res = run_cli("sample", "--model", str(out), "-n", "2", "--out", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr


def test_the_shipped_model_card_reads_its_evaluation():
    shipped = Path(__file__).resolve().parents[2] / "models" / "melody-16bar-folk"
    figures = json.loads((shipped / "evaluation.json").read_text())
    assert json.loads((shipped / "config.json").read_text())["meta"]["evaluation"] == figures
    _assert_card_matches(shipped / "MODEL_CARD.md", figures)


def _assert_card_matches(card_path: Path, figures: dict) -> None:
    card = card_path.read_text()
    rows = {
        "teacher-forced token accuracy": figures["teacher_forced_accuracy"],
        "free-running reconstruction accuracy (argmax from the posterior mean)": figures["free_running_accuracy"],
        "KL (bits per melody)": figures["kl_bits"],
        "feature overlap: mean of the four": figures["feature_overlap"]["mean"],
    }
    if "feature_overlap_realism" in figures:
        rows["feature overlap through the realism actor: mean of the four"] = figures["feature_overlap_realism"]["mean"]
    for label, value in rows.items():
        shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        assert f"| {label} | {shown} |" in card, (label, shown)
    assert f"{figures['windows']} windows" in card


def test_evaluate_says_when_the_model_was_trained_on_other_data(tiny_run, tmp_path):
    root, data, model = tiny_run
    other = tmp_path / "other"
    shutil.copytree(model, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["meta"]["data_fingerprint"] = "0000000000000000"
    (other / "config.json").write_text(json.dumps(cfg))
    res = run_cli(
        "evaluate",
        "--model",
        str(other),
        "--data",
        str(data),
        "--split",
        "validation",
        "--samples",
        "8",
        "--limit",
        "4",
    )
    assert res.returncode == 0 and "trained on another dataset" in res.stderr
    res = run_cli(
        "evaluate",
        "--model",
        str(model),
        "--data",
        str(data),
        "--split",
        "validation",
        "--samples",
        "8",
        "--limit",
        "4",
    )
    assert res.returncode == 0 and "another dataset" not in res.stderr


def _wait_for_checkpoint(out, proc, timeout=180.0):
    from melody_lc.checkpoint import exists

    deadline = time.monotonic() + timeout
    while not exists(out):
        assert proc.poll() is None and time.monotonic() < deadline, "training never wrote a checkpoint"
        time.sleep(0.1)


def _steps_saved(out) -> int | None:
    """The steps of the checkpoint in ``out`` now, or None while there is none (or it is swapped)."""
    from melody_lc.checkpoint import CheckpointError
    from melody_lc.melody.train import load_model

    try:
        return load_model(out)[1]["steps"]
    except (CheckpointError, OSError):
        return None


def _train_cmd(data, out, *extra):
    return [
        sys.executable,
        "-m",
        "melody_lc",
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        "100000",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--precision",
        "fp32",
        "--quiet",
        "--checkpoint-minutes",
        "0",
        *extra,
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_saves_and_resume_continues(tiny_run, tmp_path, sig):
    root, data, _ = tiny_run
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(out, proc)  # with --checkpoint-minutes 0 a checkpoint follows every step
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    step = json.loads((out / "config.json").read_text())["meta"]["steps"]
    assert f"checkpoint of step {step} saved" in err and "Traceback" not in err
    assert step > 0
    res = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        str(step + 3),
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--precision",
        "fp32",
        "--resume",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "config.json").read_text())["meta"]["steps"] == step + 3


def test_the_train_command_under_torchrun(tiny_run, tmp_path):
    """docs/training.md's `torchrun ... -m melody_lc train`: two processes (gloo), one checkpoint."""
    import os

    root, data, _ = tiny_run
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "ddp"
    res = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "melody_lc",
            "train",
            "--preset",
            "tiny",
            "--data",
            str(data),
            "--steps",
            "3",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--precision",
            "fp32",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 process(es)" in res.stderr and res.stdout.count("done: step 3,") == 1  # rank 0 alone reports
    assert json.loads((out / "config.json").read_text())["meta"]["steps"] == 3


def test_kill_9_never_corrupts_the_checkpoint(tiny_run, tmp_path):
    """SIGKILL at arbitrary moments while a checkpoint is written after every step."""
    from melody_lc.melody.train import load_model

    root, data, _ = tiny_run
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(out, proc)
    proc.kill()
    proc.wait()
    first = load_model(out)[1]["steps"]
    for delay in (0.01, 0.05, 0.13, 0.21, 0.37):
        proc = subprocess.Popen(
            _train_cmd(data, out, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        while "from step" not in (line := proc.stderr.readline()):  # training has begun: a checkpoint every step
            assert line, "training never began"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        proc.stderr.close()
        model, meta = load_model(out)  # always loadable: the previous checkpoint or the new one
        assert meta["steps"] >= 1
    # once more, killed only when the checkpoint has moved past the first one (an event, not a
    # delay: on a loaded machine the kills above may all come before a step is done)
    proc = subprocess.Popen(_train_cmd(data, out, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while (steps := _steps_saved(out)) is None or steps <= first:
        assert proc.poll() is None and time.monotonic() < deadline, "training never saved a later step"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert load_model(out)[1]["steps"] > first  # loadable after a kill in the middle of saving steps


def test_fit_generate_transform_commands(tiny_run, tmp_path):
    root, data, model = tiny_run
    env = {"MELODY_LC_CACHE": str(tmp_path / "cache")}
    rules = tmp_path / "r.rules"
    rules.write_text("key: ? major\ndensity: <= 16 notes per bar\n")
    common = ["--model", str(model), "--data", str(data), "--rounds", "1", "--quick", "--quiet"]
    res = run_cli("fit", str(rules), *common, env_extra=env)
    assert res.returncode == 0, res.stderr
    assert "actor satisfies all rules in" in res.stdout and list((tmp_path / "cache" / "fits").glob("fit-*"))
    other = tmp_path / "other.rules"
    other.write_text("range: C3 .. C6\n")
    res = run_cli("fit", str(rules), str(other), "--out", str(tmp_path / "shared"), *common, env_extra=env)
    assert res.returncode == 0, res.stderr
    index = json.loads((tmp_path / "shared" / "index.json").read_text())
    assert set(index) == {"r.rules", "other.rules"}
    assert all((tmp_path / "shared" / entry["fit"] / "weights.safetensors").exists() for entry in index.values())
    out = tmp_path / "gen"
    res = run_cli(
        "generate", "--rules", str(rules), "-n", "5", "--out", str(out), "--set", "tonic=F#", *common, env_extra=env
    )
    assert res.returncode == 0, res.stderr
    assert len(list(out.glob("melody-*.mid"))) == 5 and (out / "sheet.png").stat().st_size > 0
    report = json.loads((out / "report.json").read_text())
    assert report["melodies"] == 5 and "density:2" in report["rules"] and "all rules" in res.stdout
    assert (out / "report.csv").read_text().startswith("rule,satisfied,mean_reward")
    res = run_cli("generate", "--rules", str(rules), "--set", "tonic=H", *common, env_extra=env)
    assert res.returncode == 2 and "pitch class" in res.stderr
    res = run_cli("generate", "--rules", str(rules), "--set", "mode=dorian", *common, env_extra=env)
    assert res.returncode == 2 and "not an open parameter" in res.stderr
    melody = write_midi(tmp_path / "mine.mid", [scale_notes(16)])
    res = run_cli(
        "transform", str(melody), "--rules", str(rules), "--out", str(tmp_path / "t.mid"), *common, env_extra=env
    )
    assert res.returncode == 2 and "--set" in res.stderr and not (tmp_path / "t.mid").exists()
    res = run_cli(
        "transform",
        str(melody),
        "--rules",
        str(rules),
        "--out",
        str(tmp_path / "t.mid"),
        "--set",
        "tonic=C",
        "--set",
        "density=3",
        *common,
        env_extra=env,
    )
    assert res.returncode == 2 and "not an open parameter" in res.stderr
    res = run_cli(
        "transform",
        str(melody),
        "--rules",
        str(rules),
        "--out",
        str(tmp_path / "t.mid"),
        "--set",
        "tonic=C",
        *common,
        env_extra=env,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "t.mid").exists() and "already obeys every rule, so it is unchanged" in res.stdout
    assert Melody.from_midi_file(tmp_path / "t.mid") == Melody.from_midi_file(melody)
    res = run_cli(
        "transform",
        str(melody),
        "--rules",
        str(rules),
        "--out",
        str(tmp_path / "t2.mid"),
        "--set",
        "tonic=F#",
        *common,
        env_extra=env,
    )  # the C major scale, moved to F# major: it must come back in F# major
    assert res.returncode == 0, res.stderr
    moved = Melody.from_midi_file(tmp_path / "t2.mid").tokens
    assert load_rules(rules).satisfied(moved[None], {"tonic": np.array([6])}).all()
    assert "of its notes kept (onset and pitch)" in res.stdout and re.search(
        r"^  bar \d+ beat [\d.]+: [A-G]#?\d -> [A-G]#?\d$", res.stdout, re.M
    )
    res = run_cli(
        "generate",
        "--rules",
        str(rules),
        "-n",
        "6",
        "--out",
        str(tmp_path / "raw"),
        "--set",
        "tonic=F#",
        "--no-enforce",
        "--temperature",
        "1.5",
        *common,
        env_extra=env,
    )
    raw = json.loads((tmp_path / "raw" / "report.json").read_text())
    assert res.returncode == 0 and raw["enforced"] is False and raw["decodes"] == 6
    assert (raw["all_rules"] < 1) == ("break a rule" in res.stderr)
    impossible = tmp_path / "impossible.rules"  # contradictory, but only the constraints can see it
    impossible.write_text("start: on G\nleap: <= 0 semitones\nend: on C\n")  # every note repeats the first, a G
    res = run_cli(
        "generate",
        "--rules",
        str(impossible),
        "-n",
        "2",
        "--max-decodes",
        "8",
        "--out",
        str(tmp_path / "none"),
        *common,
        env_extra=env,
    )
    assert res.returncode == 2 and "allow no melody" in res.stderr and "end:3" in res.stderr
    assert not (tmp_path / "none").exists() and "Traceback" not in res.stderr
    static = tmp_path / "static.rules"
    static.write_text("density: >= 12 notes per bar\nrests: >= 50%\n")
    res = run_cli("generate", "--rules", str(static), "--out", str(tmp_path / "none"), *common, env_extra=env)
    assert res.returncode == 2 and "static.rules:2:1" in res.stderr and not (tmp_path / "none").exists()
    bad = tmp_path / "bad.rules"
    bad.write_text("key: C majr\n")
    res = run_cli("generate", "--rules", str(bad), "--out", str(tmp_path / "nothing"), *common, env_extra=env)
    assert res.returncode == 2 and "bad.rules:1:8" in res.stderr and not (tmp_path / "nothing").exists()
    for option in (["--rounds", "3"], ["--quick"]):  # rejection sampling fits nothing: a fit's option is a mistake
        res = run_cli(
            "generate", "--rules", str(rules), "--method", "reject", *option, "--out", str(tmp_path / "nothing"),
            "--model", str(model), "--quiet", env_extra=env,
        )  # fmt: skip
        assert res.returncode == 2 and f"{option[0]} sets how rules are fitted" in res.stderr
        assert not (tmp_path / "nothing").exists()


def test_a_new_rules_file_fits_with_nothing_but_the_model(tiny_run, tmp_path):
    """`fit-stats` stores beside the model what a fit takes from the data; then no dataset is needed."""
    root, data, model = tiny_run
    mine = tmp_path / "model"
    shutil.copytree(model, mine)
    env = {"MELODY_LC_CACHE": str(tmp_path / "cache")}  # no dataset in this cache
    rules = tmp_path / "new.rules"
    rules.write_text("key: G major\nrange: D4 .. D6\n")
    common = ["--model", str(mine), "--rounds", "1", "--quick", "--quiet"]
    res = run_cli("generate", "--rules", str(rules), "-n", "2", "--out", str(tmp_path / "a"), *common, env_extra=env)
    assert res.returncode == 2 and "no dataset there" in res.stderr
    res = run_cli("fit-stats", "--model", str(mine), "--data", str(data), "--realism-steps", "30", env_extra=env)
    assert res.returncode == 0, res.stderr
    assert (mine / "fit-stats.safetensors").is_file() and json.loads((mine / "fit-stats.json").read_text())[
        "encodings"
    ] > 0
    # ... and its realism actor: `sample` goes through it unless told not to, `evaluate` reports both
    assert json.loads((mine / "realism.json").read_text())["steps"] == 30
    written = {}
    for how in ("realism", "prior"):
        extra = ["--no-realism"] if how == "prior" else []
        res = run_cli("sample", "--model", str(mine), "-n", "4", "--out", str(tmp_path / how), *extra, env_extra=env)
        assert res.returncode == 0, res.stderr
        assert ("realism actor" in res.stderr) == (how == "realism")
        written[how] = [Melody.from_midi_file(f).tokens for f in sorted((tmp_path / how).glob("*.mid"))]
    assert len(written["realism"]) == 4 and any((a != b).any() for a, b in zip(*written.values()))
    res = run_cli("evaluate", "--model", str(mine), "--data", str(data), "--limit", "8", "--samples", "16")
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout)
    assert set(figures["feature_overlap_realism"]) == set(figures["feature_overlap"])
    res = run_cli("generate", "--rules", str(rules), "-n", "2", "--out", str(tmp_path / "a"), *common, env_extra=env)
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "a").glob("melody-*.mid"))) == 2


def test_shipped_model_samples_with_no_model_named(tmp_path):
    res = run_cli("sample", "-n", "3", "--out", str(tmp_path / "s"), "--seed", "5")
    assert res.returncode == 0, res.stderr
    melodies = [Melody.from_midi_file(f) for f in sorted((tmp_path / "s").glob("*.mid"))]
    assert len(melodies) == 3 and all(m.num_notes >= 8 for m in melodies)
    from melody_lc.cli.model import default_model_dir

    assert (default_model_dir() / "MODEL_CARD.md").is_file()
    assert Path(default_model_dir()).parent.name == "models"


def test_a_plan_is_fitted_section_by_section_and_generate_takes_one_phrase(tiny_run, tmp_path):
    root, data, model = tiny_run
    env = {"MELODY_LC_CACHE": str(tmp_path / "cache")}
    plan = tmp_path / "song.rules"
    plan.write_text(
        "key: C major\nphrase 1:\ndensity: <= 16 notes per bar\nphrase 2: morph\nphrase 3:\nrange: C3 .. C6\n"
    )
    common = ["--model", str(model), "--data", str(data), "--rounds", "1", "--quick", "--quiet"]
    res = run_cli("fit", str(plan), "--out", str(tmp_path / "fits"), *common, env_extra=env)
    assert res.returncode == 0, res.stderr
    assert "fitted" in res.stdout and "(phrase 1)" in res.stdout and "(phrase 3)" in res.stdout
    index = json.loads((tmp_path / "fits" / "index.json").read_text())
    assert set(index) == {"song.rules#phrase 1", "song.rules#phrase 3"}
    out = tmp_path / "gen"
    res = run_cli(
        "generate", "--rules", str(plan), "--phrase", "3", "-n", "2", "--out", str(out), *common, env_extra=env
    )
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["rules"]) == {"key:1", "range:6"}  # phrase 3's rules: the shared key and its range
    for extra, says in [
        ([], "the rules change from phrase to phrase here (phrases 1-3)"),
        (["--phrase", "2"], "phrase 2 is a morph between phrase 1 and phrase 3"),
    ]:
        res = run_cli("generate", "--rules", str(plan), *extra, "--out", str(out), *common, env_extra=env)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and says in res.stderr, res.stderr
