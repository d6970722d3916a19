"""Dataset builds: real corpus round trips, split leakage, cache, resume, bad files, bounded shards."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from melody_lc.melody import BadMidiFileError, Melody
from melody_lc.melody.build import BuildPlan, build_dataset, midi_tasks, split_of
from melody_lc.melody.dataset import SPLITS, MelodyDataset
from melody_lc.melody.extract import ExtractionConfig
from melody_lc.melody.sources import list_midi_files, read_midi_file
from tests.conftest import scale_notes, write_midi


def test_corpus_windows_roundtrip_exactly_through_midi(misc_folk_dataset, tmp_path):
    out, _, manifest = misc_folk_dataset
    ds = MelodyDataset(out)
    windows = np.concatenate([ds.windows(s) for s in SPLITS])
    assert len(windows) == sum(manifest["stats"]["windows"].values()) > 300
    rng = np.random.default_rng(0)
    for k, tokens in enumerate(windows[rng.permutation(len(windows))[:300]]):
        m = Melody(tokens)
        assert np.array_equal(m.tokens, tokens)  # stored windows are canonical
        path = tmp_path / f"{k}.mid"
        m.to_midi_file(path, qpm=float(rng.integers(60, 180)))
        assert Melody.from_midi_file(path) == m
        assert Melody.from_note_sequence(m.to_note_sequence()) == m


def test_no_leakage_between_splits(misc_folk_dataset):
    out, plan, manifest = misc_folk_dataset
    ds = MelodyDataset(out)
    tunes = {s: set(ds.tune_names(s)) for s in SPLITS}
    rows = {s: {w.tobytes() for w in ds.windows(s)} for s in SPLITS}
    for a in SPLITS:
        assert len(ds.tune_names(a)) == len(ds.windows(a))
        for b in SPLITS:
            if a < b:
                assert not tunes[a] & tunes[b], f"a tune is in both {a} and {b}"
                assert not rows[a] & rows[b], f"a window is in both {a} and {b}"
    assert all(len(rows[s]) == len(ds.windows(s)) for s in SPLITS)  # no duplicates within a split
    assert all(manifest["stats"]["windows"][s] > 0 for s in SPLITS)


def test_split_assignment_is_deterministic_and_seeded():
    keys = [bytes([i, j]) for i in range(40) for j in range(25)]
    a = [split_of(k, 0) for k in keys]
    assert a == [split_of(k, 0) for k in keys]
    b = [split_of(k, 1) for k in keys]
    assert a != b
    counts = np.bincount(a, minlength=3) / len(a)
    assert abs(counts[0] - 0.9) < 0.04 and counts[1] > 0.02 and counts[2] > 0.02


def test_transposed_copy_of_a_tune_lands_in_the_same_split(tmp_path):
    base = scale_notes(20)
    write_midi(tmp_path / "a.mid", [base])
    write_midi(tmp_path / "b.mid", [[(p + 5, s, e, v) for p, s, e, v in base]])
    from melody_lc.melody.extract import extract_windows

    ka = extract_windows(read_midi_file(tmp_path / "a.mid"), "a").content_key
    kb = extract_windows(read_midi_file(tmp_path / "b.mid"), "b").content_key
    assert ka == kb and all(split_of(ka, s) == split_of(kb, s) for s in range(20))


def test_second_build_reuses_the_cache(misc_folk_dataset):
    out, plan, manifest = misc_folk_dataset
    t = time.perf_counter()
    again = build_dataset(plan, out, workers=2)
    assert again["reused"] and time.perf_counter() - t < 2.0
    assert again["fingerprint"] == manifest["fingerprint"]
    other_seed = BuildPlan(plan.source, plan.tasks, plan.config, seed=1)
    assert other_seed.fingerprint() != plan.fingerprint()


def test_corpus_build_leaves_no_music21_scratch_files(tmp_path):
    from melody_lc.melody.build import music21_tasks

    scratch = Path(tempfile.gettempdir()) / "music21"
    before = set(scratch.glob("*")) if scratch.exists() else set()
    tasks = music21_tasks(["miscFolk"])[:5]
    build_dataset(
        BuildPlan({"kind": "music21", "collections": ["miscFolk"]}, tasks, ExtractionConfig(), 0), tmp_path / "d"
    )
    after = set(scratch.glob("*")) if scratch.exists() else set()
    assert after == before


def _midi_corpus(root: Path, n: int) -> None:
    rng = np.random.default_rng(5)
    for i in range(n):
        notes = [(int(60 + rng.integers(-5, 12)), s, s + 2, 90) for s in range(0, 16 * 18, 2)]
        sub = root / f"sub{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        write_midi(sub / f"song{i:03d}.mid", [notes])


def test_interrupted_build_resumes_to_the_same_result(tmp_path):
    src = tmp_path / "midi"
    _midi_corpus(src, 24)
    plan = BuildPlan({"kind": "midi", "dir": str(src)}, midi_tasks(list_midi_files(src), src), ExtractionConfig(), 0)
    clean = build_dataset(plan, tmp_path / "clean", shard_windows=10)

    class Stop(Exception):
        pass

    def stop_after_two(n):
        if n == 2:
            raise Stop

    out = tmp_path / "resumed"
    with pytest.raises(Stop):
        build_dataset(plan, out, shard_windows=10, on_shard=stop_after_two)
    assert not out.exists(), "an interrupted build must not leave a dataset"
    progress = json.loads((tmp_path / "resumed.partial" / "progress.json").read_text())
    assert len(progress["shards"]) == 2 and 0 < progress["stats"]["tasks_done"] < 24
    resumed = build_dataset(plan, out, shard_windows=10, workers=2)
    assert resumed["resumed_from_task"] == progress["stats"]["tasks_done"]
    assert not (tmp_path / "resumed.partial").exists()
    assert resumed["stats"] == clean["stats"]
    a, b = MelodyDataset(tmp_path / "clean"), MelodyDataset(out)
    for s in SPLITS:
        np.testing.assert_array_equal(a.windows(s), b.windows(s))
        assert a.tune_names(s) == b.tune_names(s)
    assert len(clean["shards"]) > 3  # shards are flushed as they fill: memory stays bounded


def test_changed_source_restarts_instead_of_resuming(tmp_path):
    src = tmp_path / "midi"
    _midi_corpus(src, 6)
    plan = BuildPlan({"kind": "midi", "dir": str(src)}, midi_tasks(list_midi_files(src), src), ExtractionConfig(), 0)

    def boom(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(plan, tmp_path / "out", shard_windows=5, on_shard=boom)
    plan2 = BuildPlan(plan.source, plan.tasks, ExtractionConfig(min_notes=8), 0)
    result = build_dataset(plan2, tmp_path / "out", shard_windows=5)
    assert result["resumed_from_task"] == 0 and result["config"]["min_notes"] == 8


# ----------------------------------------------------------------------------------------------
# Bad files, made here byte by byte
# ----------------------------------------------------------------------------------------------
def _header(ntracks=1, fmt=1, division=480):
    return (
        b"MThd"
        + (6).to_bytes(4, "big")
        + fmt.to_bytes(2, "big")
        + ntracks.to_bytes(2, "big")
        + division.to_bytes(2, "big")
    )


def _track(body: bytes, length: int | None = None):
    return b"MTrk" + (len(body) if length is None else length).to_bytes(4, "big") + body


END = b"\x00\xff\x2f\x00"
BAD_FILES = {
    "empty.mid": b"",
    "text.mid": b"This is a text file, not MIDI.\n",
    "truncated.mid": _header() + _track(b"\x00\x90\x3c\x40\x60\x80\x3c\x40" + END, length=400)[:20],
    "running_status.mid": _header() + _track(b"\x00\x3c\x40\x60\x3c\x00" + END),  # data bytes with no status byte
    "data_over_127.mid": _header() + _track(b"\x00\x90\x3c\xc8\x60\x80\x3c\x40" + END),  # velocity byte 0xC8
    "type2.mid": _header(fmt=2) + _track(b"\x00\x90\x3c\x40\x60\x80\x3c\x40" + END),
}


def make_bad_files(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in BAD_FILES.items():
        (directory / name).write_bytes(data)
        paths[name] = directory / name
    return paths


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_raises_a_domain_error(tmp_path, name):
    path = make_bad_files(tmp_path)[name]
    with pytest.raises(BadMidiFileError) as info:
        read_midi_file(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 250


def test_bad_files_in_a_directory_are_skipped_and_listed(tmp_path):
    src = tmp_path / "mixed"
    make_bad_files(src)
    write_midi(src / "good.mid", [scale_notes(18)])
    plan = BuildPlan({"kind": "midi", "dir": str(src)}, midi_tasks(list_midi_files(src), src), ExtractionConfig(), 0)
    manifest = build_dataset(plan, tmp_path / "out", workers=2)
    skipped = dict(manifest["stats"]["skipped"])
    assert set(skipped) == set(BAD_FILES)
    assert skipped["empty.mid"] == "empty file"
    assert skipped["text.mid"].startswith("not a MIDI file")
    assert skipped["type2.mid"].startswith("type 2")
    assert "data byte" in skipped["data_over_127.mid"]
    assert skipped["truncated.mid"].startswith("truncated")
    assert "running status" in skipped["running_status.mid"]
    assert manifest["stats"]["files_read"] == 1 and sum(manifest["stats"]["windows"].values()) > 0


def test_out_that_is_not_a_dataset_is_never_replaced(tmp_path):
    from melody_lc.melody.dataset import DatasetError

    src = tmp_path / "midi"
    _midi_corpus(src, 3)
    plan = BuildPlan({"kind": "midi", "dir": str(src)}, midi_tasks(list_midi_files(src), src), ExtractionConfig(), 0)
    with pytest.raises(DatasetError, match="not a melody dataset"):
        build_dataset(plan, src)
    with pytest.raises(DatasetError, match="not a melody dataset"):
        build_dataset(plan, src, force=True)
    assert len(list_midi_files(src)) == 3 and not (src / "manifest.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_dataset(plan, empty)["reused"] is False  # an empty directory is fine


def test_broken_symlink_in_a_directory_is_ignored(tmp_path):
    src = tmp_path / "midi"
    _midi_corpus(src, 2)
    (src / "gone.mid").symlink_to(tmp_path / "nowhere.mid")
    assert [p.name for p in list_midi_files(src)] == ["song000.mid", "song001.mid"]


def test_corpus_resume_counts_files_like_a_clean_build(tmp_path):
    from melody_lc.melody.build import music21_tasks

    tasks = music21_tasks(["miscFolk"])[:40]  # tunes of one multi-tune ABC file
    plan = BuildPlan({"kind": "music21", "collections": ["miscFolk"]}, tasks, ExtractionConfig(), 0)
    clean = build_dataset(plan, tmp_path / "clean", shard_windows=20)

    def stop(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(plan, tmp_path / "r", shard_windows=20, on_shard=stop)
    resumed = build_dataset(plan, tmp_path / "r", shard_windows=20)
    assert resumed["resumed_from_task"] > 0 and resumed["stats"] == clean["stats"]
    assert clean["stats"]["files_read"] == 1


def test_build_interrupted_while_renaming_is_finished_not_redone(tmp_path):
    import os

    src = tmp_path / "midi"
    _midi_corpus(src, 3)
    plan = BuildPlan({"kind": "midi", "dir": str(src)}, midi_tasks(list_midi_files(src), src), ExtractionConfig(), 0)
    build_dataset(plan, tmp_path / "ds")
    os.replace(tmp_path / "ds", tmp_path / "ds.partial")  # as if stopped just before the final rename
    again = build_dataset(plan, tmp_path / "ds")
    assert again["reused"] and (tmp_path / "ds" / "manifest.json").exists() and not (tmp_path / "ds.partial").exists()
