"""Building a melody dataset (the on-disk format is in :mod:`melody_lc.melody.dataset`): parallel
extraction, shards flushed as they fill, splits per tune, de-duplication, cache and resume.

It is built in ``<out>.partial/`` and renamed to ``<out>`` only when complete, so an interrupted
build leaves no half dataset. While building, ``progress.json`` in the partial directory records
the finished shards; running the same build again resumes after the last one. Results are streamed
in task order and shards are flushed as they fill, so memory stays bounded on a directory the size
of the Lakh MIDI dataset.

Splits are assigned per source tune (never per window), from a transposition-invariant
fingerprint of the tune's content and the seed: overlapping windows of one tune, and copies of a
tune in two files, always land in the same split. Windows are de-duplicated over the whole dataset.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from melody_lc.fileio import atomic_path, replace_dir, write_json
from melody_lc.melody.dataset import (
    FORMAT_VERSION,
    SPLIT_FRACTIONS,
    SPLITS,
    DatasetError,
    load_shard,
    read_manifest,
)
from melody_lc.melody.errors import BadMidiFileError
from melody_lc.melody.extract import EXTRACTION_VERSION, ExtractionConfig, TuneWindows, extract_windows


# --------------------------------------------------------------------------------------------------
# Sources and tasks
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: a MIDI file, or a music21 corpus job."""

    kind: str  # "midi" | "music21"
    path: str
    name: str
    collection: str | None = None
    number: int | None = None


@dataclass
class TaskResult:
    name: str
    path: str
    tunes: list[TuneWindows]
    error: str | None = None  # why the whole task was skipped


def midi_tasks(paths: list[Path], root: Path | None = None) -> list[Task]:
    def rel(p: Path) -> str:
        return str(p.relative_to(root)) if root is not None else str(p)

    return [Task("midi", str(p), rel(p)) for p in paths]


def music21_tasks(collections) -> list[Task]:
    from melody_lc.melody.sources import corpus_tunes

    return [Task("music21", j.path, j.name, j.collection, j.number) for j in corpus_tunes(collections)]


def run_task(task: Task, config: ExtractionConfig) -> TaskResult:
    """Parse one task and extract its windows. Never raises for bad data: the error is returned."""
    from melody_lc.melody.sources import CorpusTune, SkipTune, parse_corpus_tune, read_midi_file

    try:
        if task.kind == "midi":
            sequences = [(task.name, read_midi_file(task.path))]
        else:
            job = CorpusTune(task.path, task.collection or "", task.number)
            sequences = parse_corpus_tune(job, expand_repeats=config.expand_repeats)
        tunes = [extract_windows(seq, name, config) for name, seq in sequences]
    except (BadMidiFileError, SkipTune) as e:
        return TaskResult(task.name, task.path, [], str(e))
    except Exception as e:  # a parser's internal error on odd input: skip the file, say why
        return TaskResult(task.name, task.path, [], f"could not parse ({type(e).__name__}: {str(e)[:160]})")
    return TaskResult(task.name, task.path, tunes)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # ... with SIGTERM, which must simply end a worker
    import warnings

    warnings.filterwarnings("ignore")


def _run_task_star(args):
    return run_task(*args)


# --------------------------------------------------------------------------------------------------
# Build state
# --------------------------------------------------------------------------------------------------
@dataclass
class Stats:
    """Counters of a build; saved with progress and in the manifest."""

    tasks_done: int = 0
    files_read: int = 0
    last_file: str = ""  # the tasks of one file are contiguous: a file is counted when it changes
    tunes: int = 0
    tunes_without_windows: int = 0
    windows: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    tunes_per_split: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    dropped_empty: int = 0
    dropped_duplicate: int = 0
    skipped: list = field(default_factory=list)  # [name, reason]
    skip_reasons: dict = field(default_factory=dict)
    meters: dict = field(default_factory=dict)  # meter -> tunes using it
    skipped_meters: dict = field(default_factory=dict)  # meter -> tunes left out for it
    keys: dict = field(default_factory=dict)  # key -> tunes


class SeenWindows:
    """A compact set of 64-bit window hashes (8 bytes each), for de-duplication at any scale."""

    def __init__(self) -> None:
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._recent: set[int] = set()

    @staticmethod
    def key(window: np.ndarray) -> int:
        return int.from_bytes(hashlib.blake2b(window.tobytes(), digest_size=8).digest(), "little")

    def add(self, key: int) -> bool:
        """Add a key; True if it was new."""
        if key in self._recent:
            return False
        i = np.searchsorted(self._sorted, np.uint64(key))
        if i < len(self._sorted) and self._sorted[i] == key:
            return False
        self._recent.add(key)
        if len(self._recent) >= 1 << 20:
            self._sorted = np.union1d(self._sorted, np.fromiter(self._recent, dtype=np.uint64))
            self._recent.clear()
        return True


def split_of(content_key: bytes, seed: int) -> int:
    """Index into SPLITS for a tune, from its content fingerprint and the seed."""
    h = hashlib.blake2b(content_key, digest_size=8, key=str(seed).encode()).digest()
    u = int.from_bytes(h, "little") / 2**64
    return int(np.searchsorted(np.cumsum(SPLIT_FRACTIONS), u, side="right").clip(0, len(SPLITS) - 1))


@dataclass
class BuildPlan:
    source: dict  # what was asked for, e.g. {"kind": "music21", "collections": [...]}
    tasks: list[Task]
    config: ExtractionConfig
    seed: int

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([FORMAT_VERSION, EXTRACTION_VERSION, self.source, asdict(self.config), self.seed]).encode())
        for t in self.tasks:
            h.update(f"{t.name}\0{t.number}\0".encode())
            if t.kind == "midi":
                try:
                    st = os.stat(t.path)
                    h.update(f"{st.st_size}\0{st.st_mtime_ns}\0".encode())
                except OSError:  # vanished since it was listed: the build reports it as skipped
                    h.update(b"missing\0")
        return h.hexdigest()[:16]


class _ShardWriter:
    """Accumulates windows and writes shards atomically; records progress after each one."""

    def __init__(self, partial: Path, plan_fp: str, stats: Stats, shards: list[dict]) -> None:
        self.partial, self.plan_fp, self.stats, self.shards = partial, plan_fp, stats, shards
        self._tokens: list[np.ndarray] = []
        self._split: list[int] = []
        self._tune: list[int] = []
        self._names: list[str] = []
        self.pending = 0

    def add_tune(self, name: str, windows: list[np.ndarray], split: int) -> None:
        tune = len(self._names)
        self._names.append(name)
        self._tokens.extend(windows)
        self._split.extend([split] * len(windows))
        self._tune.extend([tune] * len(windows))
        self.pending += len(windows)

    def flush(self) -> None:
        from safetensors.numpy import save_file

        if self._tokens:
            index = len(self.shards)
            fname = f"shard-{index:05d}.safetensors"
            tensors = {
                "tokens": np.stack(self._tokens).astype(np.uint8),
                "split": np.array(self._split, dtype=np.uint8),
                "tune": np.array(self._tune, dtype=np.int32),
            }
            with atomic_path(self.partial / fname) as tmp:
                save_file(tensors, str(tmp), metadata={"tunes": json.dumps(self._names)})
            self.shards.append({"file": fname, "windows": len(self._tokens)})
        self._tokens, self._split, self._tune, self._names = [], [], [], []
        self.pending = 0
        write_json(
            self.partial / "progress.json",
            {"fingerprint": self.plan_fp, "stats": asdict(self.stats), "shards": self.shards},
        )


# --------------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------------
def build_dataset(
    plan: BuildPlan,
    out: str | os.PathLike,
    workers: int = 1,
    shard_windows: int = 50_000,
    flush_tasks: int = 2000,
    force: bool = False,
    progress: bool = False,
    on_shard: Callable[[int], None] | None = None,
) -> dict:
    """Build (or resume, or reuse) the dataset described by ``plan`` at ``out``; return its manifest.

    * ``out`` already holds a complete dataset of the same plan: it is reused as is (unless ``force``).
    * ``out.partial`` holds an interrupted build of the same plan: it resumes after its last shard.
    * ``on_shard(n)`` is called after each shard is written (tests use it to interrupt a build).
    """
    out = Path(out)
    fp = plan.fingerprint()
    partial = out.with_name(out.name + ".partial")
    _check_replaceable(out)
    if not force:
        existing = reusable_build(plan, out, fp)
        if existing is not None:
            return existing

    stats, shards, seen = Stats(), [], SeenWindows()
    prog_path = partial / "progress.json"
    resumed_from = 0
    if prog_path.exists() and not force:
        prog = json.loads(prog_path.read_text())
        if prog.get("fingerprint") == fp:
            stats, shards = Stats(**prog["stats"]), prog["shards"]
            for s in shards:
                for w in load_shard(partial / s["file"])[0]["tokens"]:
                    seen.add(SeenWindows.key(w))
            resumed_from = stats.tasks_done
    if resumed_from == 0:
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    for stray in partial.iterdir():  # shards and temp files written after the last progress record
        if stray.name not in {s["file"] for s in shards} | {"progress.json"}:
            stray.unlink()

    writer = _ShardWriter(partial, fp, stats, shards)
    todo = plan.tasks[resumed_from:]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(plan.tasks),
            initial=resumed_from,
            unit="tune" if plan.source["kind"] == "music21" else "file",
            dynamic_ncols=True,
            smoothing=0.05,
        )
    pool = None
    since_flush = 0
    try:
        if workers > 1:
            pool = mp.get_context().Pool(workers, initializer=_worker_init)
            results = pool.imap(_run_task_star, ((t, plan.config) for t in todo), chunksize=4)
        else:
            results = (run_task(t, plan.config) for t in todo)
        for res in results:
            _account(res, stats, writer, seen, plan.seed)
            stats.tasks_done += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(windows=sum(stats.windows.values()), refresh=False)
            since_flush += 1
            if writer.pending >= shard_windows or (writer.pending and since_flush >= flush_tasks):
                writer.flush()
                since_flush = 0
                if on_shard is not None:
                    on_shard(len(shards))
        writer.flush()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()

    manifest = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fp,
        "source": plan.source,
        "config": asdict(plan.config),
        "seed": plan.seed,
        "splits": list(SPLITS),
        "split_fractions": list(SPLIT_FRACTIONS),
        "stats": asdict(stats),
        "shards": shards,
        "resumed_from_task": resumed_from,
    }
    write_json(partial / "manifest.json", manifest)
    _finish(partial, out)
    manifest["reused"] = False
    return manifest


def reusable_build(plan: BuildPlan, out: str | os.PathLike, fingerprint: str | None = None) -> dict | None:
    """The manifest of a finished build of ``plan`` at ``out`` (marked ``reused``), or None.

    Raises :class:`DatasetError` if ``out`` is something else that a build would replace.
    """
    out = Path(out)
    fp = fingerprint or plan.fingerprint()
    _check_replaceable(out)
    partial = out.with_name(out.name + ".partial")
    existing = read_manifest(out)
    finished = read_manifest(partial)
    if finished is not None and finished["fingerprint"] == fp:  # interrupted while being renamed
        _finish(partial, out)
        existing = finished
    if existing is not None and existing["fingerprint"] == fp:
        existing["reused"] = True
        return existing
    return None


def _check_replaceable(out: Path) -> None:
    """A build replaces ``out``: allow that only for a dataset or an empty directory."""
    if out.exists() and not (out / "manifest.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: exists and is not a melody dataset; choose another --out (it would be replaced)")


def _finish(partial: Path, out: Path) -> None:
    """Move a complete build into place; the progress record goes last, once nothing can be lost."""
    replace_dir(partial, out)
    (out / "progress.json").unlink(missing_ok=True)


def _account(res: TaskResult, stats: Stats, writer: _ShardWriter, seen: SeenWindows, seed: int) -> None:
    """Fold one task's result into the counters and the shard writer (in task order: deterministic)."""
    if res.error is not None:
        stats.skipped.append([res.name, res.error])
        reason = res.error.split(" (")[0]
        stats.skip_reasons[reason] = stats.skip_reasons.get(reason, 0) + 1
        return
    if res.path != stats.last_file:  # a corpus file split into several tunes counts once
        stats.last_file = res.path
        stats.files_read += 1
    for tune in res.tunes:
        stats.tunes += 1
        for m in tune.meters:
            stats.meters[m] = stats.meters.get(m, 0) + 1
        for m in tune.skipped_meters:
            stats.skipped_meters[m] = stats.skipped_meters.get(m, 0) + 1
        stats.keys[tune.key] = stats.keys.get(tune.key, 0) + 1
        stats.dropped_empty += tune.dropped_empty
        stats.dropped_duplicate += tune.dropped_duplicate
        split = split_of(tune.content_key, seed)
        kept = []
        for w in tune.windows:
            if seen.add(SeenWindows.key(w)):
                kept.append(w)
            else:
                stats.dropped_duplicate += 1
        if not kept:
            stats.tunes_without_windows += 1
            continue
        stats.tunes_per_split[SPLITS[split]] += 1
        stats.windows[SPLITS[split]] += len(kept)
        writer.add_tune(tune.name, kept, split)
