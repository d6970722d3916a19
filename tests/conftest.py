"""Shared test helpers: real MIDI files written with mido, real music21 corpus tunes."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import mido
import numpy as np
import pytest


def _tiny(**changes):
    from melody_lc.melody.model import PRESETS, VAEConfig

    return VAEConfig.from_dict({**PRESETS["tiny"].to_dict(), **changes})


# every decoder at the tiny preset's sizes (ids -> configs): the tests run each path through them all
TINY_MODELS = {
    "lstm": _tiny(),
    "parallel": _tiny(encoder="patches", decoder="parallel"),
    "parallel+head": _tiny(encoder="patches", decoder="parallel", head_size=16, token_dropout=0.5),
}
EVERY_DECODER = pytest.mark.parametrize("config", list(TINY_MODELS.values()), ids=list(TINY_MODELS))

warnings.filterwarnings("ignore", message="Couldn't find ffmpeg")

TPQ = 480  # ticks per quarter in the files the tests write
STEP_TICKS = TPQ // 4


def run_cli(*args, env_extra=None, **kw):
    """``melody-lc ARGS`` in a fresh interpreter, as a user runs it."""
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "melody_lc", *args], capture_output=True, text=True, env=env, **kw)


def write_midi(
    path: Path,
    tracks: list[list[tuple[int, int, int, int]]],
    *,
    tempos=((0, 500000),),
    time_signatures=((0, 4, 4),),
    drum_tracks=(),
    programs=None,
) -> Path:
    """Write a type-1 MIDI file. Each track is a list of (pitch, start_step, end_step, velocity).

    ``tempos`` are (step, microseconds per quarter) and ``time_signatures`` (step, num, den), all in
    the conductor track; tracks listed in ``drum_tracks`` play on channel 10.
    """
    mid = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    meta = [(s * STEP_TICKS, mido.MetaMessage("set_tempo", tempo=t)) for s, t in tempos]
    meta += [
        (s * STEP_TICKS, mido.MetaMessage("time_signature", numerator=n, denominator=d)) for s, n, d in time_signatures
    ]
    mid.tracks.append(_track(meta))
    for k, notes in enumerate(tracks):
        ch = 9 if k in drum_tracks else k % 9
        events = []
        if programs is not None:
            events.append((0, mido.Message("program_change", channel=ch, program=programs[k])))
        for pitch, start, end, vel in notes:
            events.append((end * STEP_TICKS, mido.Message("note_off", channel=ch, note=pitch, velocity=0)))
            events.append((start * STEP_TICKS, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
        mid.tracks.append(_track(events))
    mid.save(str(path))
    return path


def _track(events):
    track = mido.MidiTrack()
    now = 0
    # note-offs before note-ons at the same tick (they were appended first)
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        track.append(msg.copy(time=tick - now))
        now = tick
    return track


def scale_notes(n_bars: int, step_len: int = 2, base: int = 60) -> list[tuple[int, int, int, int]]:
    """A melody of eighth notes walking up and down a C major scale for ``n_bars`` bars."""
    scale = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2]
    notes = []
    for k in range(n_bars * 16 // step_len):
        start = k * step_len
        notes.append((base + scale[k % len(scale)], start, start + step_len, 90))
    return notes


@pytest.fixture(scope="session")
def misc_folk_dataset(tmp_path_factory):
    """A real dataset built from music21's miscFolk collection (185 tunes), shared by tests."""
    from melody_lc.melody.build import BuildPlan, build_dataset, music21_tasks
    from melody_lc.melody.extract import ExtractionConfig

    out = tmp_path_factory.mktemp("ds") / "miscfolk"
    plan = BuildPlan(
        {"kind": "music21", "collections": ["miscFolk"]}, music21_tasks(["miscFolk"]), ExtractionConfig(), seed=0
    )
    manifest = build_dataset(plan, out, workers=2)
    return out, plan, manifest


def random_melody_tokens(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """Random (non-canonical) token strings: notes, holds and rests mixed."""
    choice = rng.random((n, 256))
    pitches = rng.integers(40, 90, (n, 256))
    return np.where(choice < 0.3, pitches, np.where(choice < 0.85, 128, 129))


@pytest.fixture(scope="session")
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
    res = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--out",
        str(model),
        "--precision",
        "fp32",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    return root, data, model


# Markers (pyproject.toml): `live` for tests on real MIDI ports (a JACK server), `slow` for tests that
# train a model or parse the corpus. `python -m pytest -m "not slow and not live"` runs the rest.
LIVE_FIXTURES = {"jack", "receiver"}
SLOW_FIXTURES = {"tiny_run", "misc_folk_dataset"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & LIVE_FIXTURES:
            item.add_marker(pytest.mark.live)
        if names & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
    # The audio tests run last: they start FluidSynth and capture clients on the JACK server, and in
    # the two clean-clone runs where they ran first, the MIDI chain tests after them lost messages
    # (in the runs before, without them, those passed).
    items.sort(key=lambda item: Path(str(item.fspath)).parent.name == "audio")
