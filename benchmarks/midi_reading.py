"""Reading real MIDI files into training windows: symusic (melody-lc's reader) against note_seq's
pretty_midi path (what melody-lc used before), at 1 and 2 workers.

    python benchmarks/midi_reading.py                  # the collection below (built once, then cached)
    python benchmarks/midi_reading.py --midi DIR       # your own MIDI collection

The default collection is real MIDI of real music: the MIDI files that ship inside music21 (test
files of many kinds, a Mozart serenade), and music21's Bach chorales (four or more parts) and
folk tunes written out as MIDI by music21. It is written once into melody-lc's cache.

For each reader and worker count: files per second from bytes on disk to extracted windows (parse,
quantize, skyline, cut), and the speed-up over note_seq's path measured in the same run. Also: on
how many files the two readers give identical windows, meters, keys and fingerprints. melody-lc
reads a file with symusic, and again with pretty_midi where a part has overlapping notes of one
pitch (the readers pair those note-ons and note-offs differently), so that every file gives the
windows it gave before; what still differs is listed (a note-on symusic finds no note-off for, a
note sounding across a program change). Then `melody-lc data build` itself on
the collection (symusic), as a user runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from melody_lc.melody.build import BuildPlan, build_dataset, midi_tasks
from melody_lc.melody.extract import ExtractionConfig, extract_windows
from melody_lc.melody.hardware import describe_hardware
from melody_lc.melody.sources import list_midi_files, parse_midi_bytes
from melody_lc.paths import cache_dir


def build_collection(out: Path, chorales: int, folk: int) -> None:
    """Write the default collection into ``out`` (atomically: a temp folder, then rename)."""
    import shutil

    import music21
    from music21 import converter, corpus

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shipped = sorted(Path(music21.__file__).parent.rglob("*.mid"))
    for p in shipped:
        shutil.copy(p, tmp / f"music21-{p.stem}.mid")
    bach = [p for p in sorted(corpus.getPaths(), key=str) if "bach" in p.parts and p.suffix == ".mxl"][:chorales]
    folk_files = [p for p in sorted(corpus.getPaths(), key=str) if "oneills1850" in p.parts][: max(1, folk // 50)]
    written = 0
    for p in bach:
        try:
            converter.parse(str(p), forceSource=True).write("midi", fp=str(tmp / f"bach-{p.stem}.mid"))
            written += 1
        except Exception as e:  # a score music21 cannot write as MIDI is left out
            print(f"  skipped {p.name}: {type(e).__name__}")
    for p in folk_files:
        opus = converter.parse(str(p), forceSource=True)
        for i, score in enumerate(list(getattr(opus, "scores", [opus]))[:50]):
            try:
                score.write("midi", fp=str(tmp / f"folk-{p.stem}-{i}.mid"))
                written += 1
            except Exception as e:
                print(f"  skipped {p.name}#{i}: {type(e).__name__}")
    os.replace(tmp, out)
    print(f"collection: {len(shipped)} MIDI files shipped in music21, {written} written from its corpus -> {out}")


def _windows_symusic(path: str):
    return extract_windows(parse_midi_bytes(Path(path).read_bytes()), path)


def _windows_note_seq(path: str):
    from melody_lc.melody.noteseq import note_sequence_from_midi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract_windows(note_sequence_from_midi(Path(path).read_bytes()), path)


def _run(fn, paths: list[str], workers: int):
    t = time.perf_counter()
    if workers == 1:
        out = [_safe(fn, p) for p in paths]
    else:
        with ProcessPoolExecutor(workers) as pool:
            out = list(pool.map(_safe, [fn] * len(paths), paths, chunksize=8))
    return out, time.perf_counter() - t


def _safe(fn, path):
    try:
        return fn(path)
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return (
        np.array_equal(a.windows, b.windows)
        and a.meters == b.meters
        and a.key == b.key
        and a.content_key == b.content_key
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi", help="a folder of MIDI files (default: the collection described above)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chorales", type=int, default=400)
    ap.add_argument("--folk", type=int, default=400)
    args = ap.parse_args()

    folder = Path(args.midi) if args.midi else cache_dir() / "benchmarks" / f"midi-{args.chorales}-{args.folk}"
    if not folder.exists():
        build_collection(folder, args.chorales, args.folk)
    paths = [str(p) for p in list_midi_files(folder)]
    size = sum(os.path.getsize(p) for p in paths)
    print(f"{describe_hardware()}; {os.cpu_count()} cores")
    print(f"{len(paths)} MIDI files, {size / 1e6:.1f} MB, in {folder.name}")

    readers = {"symusic": _windows_symusic}
    if importlib.util.find_spec("note_seq") is not None:
        readers["note_seq (pretty_midi)"] = _windows_note_seq
    else:
        print("note_seq is not installed (pip install 'melody-lc[note-seq]'): symusic only")
    print("| reader | workers | seconds | files/s | windows | speed-up over note_seq |")
    print("|---|---:|---:|---:|---:|---:|")
    results, rates = {}, {}
    for workers in args.workers:
        for name, fn in reversed(list(readers.items())):  # note_seq's first: the reference
            out, dt = _run(fn, paths, workers)
            results[name] = out
            rates[name, workers] = len(paths) / dt
            windows = sum(len(r.windows) for r in out if not isinstance(r, str))
            ref = rates.get(("note_seq (pretty_midi)", workers))
            speed = f"{rates[name, workers] / ref:.1f}x" if ref else "—"
            print(f"| {name} | {workers} | {dt:.1f} | {len(paths) / dt:.1f} | {windows:,} | {speed} |", flush=True)
    if len(readers) == 2:
        a, b = results["symusic"], results["note_seq (pretty_midi)"]
        same = sum(_same(x, y) for x, y in zip(a, b))
        print(f"identical windows, meters, keys and fingerprints: {same} of {len(paths)} files")
        for p, x, y in zip(paths, a, b):
            if not _same(x, y):
                wx = "error" if isinstance(x, str) else len(x.windows)
                wy = "error" if isinstance(y, str) else len(y.windows)
                print(f"  differs: {Path(p).name}: symusic {wx} windows, note_seq {wy}")

    for workers in args.workers:
        plan = BuildPlan(
            {"kind": "midi", "dir": str(folder)},
            midi_tasks(list_midi_files(folder), folder),
            ExtractionConfig(),
            seed=0,
        )
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            manifest = build_dataset(plan, Path(tmp) / "ds", workers=workers)
            dt = time.perf_counter() - t
        print(
            f"melody-lc data build, {workers} worker{'s' if workers > 1 else ''}: {dt:.1f} s, "
            f"{manifest['stats']['files_read'] / dt:.1f} files/s, {sum(manifest['stats']['windows'].values()):,} windows"
        )


if __name__ == "__main__":
    main()
