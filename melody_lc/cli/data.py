"""``melody-lc data build`` and ``melody-lc data info``: the melody dataset from MIDI or music21."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from melody_lc.cli import checks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build and inspect melody datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    b = dsub.add_parser(
        "build",
        help="extract 16-bar melody windows from MIDI files or the music21 corpus",
        description="Extract 16-bar windows (256 sixteenths x 130 classes) into a dataset directory with "
        "train/validation/test splits per tune. The build is cached (a second identical build is instant) "
        "and resumable (run the same command again after an interruption).",
    )
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", choices=["music21"], help="music21's bundled corpus (folk tunes and Bach chorales)")
    src.add_argument(
        "--midi-dir", metavar="DIR", help="every .mid/.midi file under DIR (bad files are skipped and listed)"
    )
    src.add_argument("--midi", metavar="FILE", nargs="+", help="these MIDI files (a bad one is an error)")
    b.add_argument(
        "--collections", metavar="A,B", help="music21 collections to use (default: the folk collections and bach)"
    )
    b.add_argument(
        "--out",
        metavar="PATH",
        type=checks.out_folder,
        help="dataset directory (default: a cache directory named after the source)",
    )
    b.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="parallel worker processes (default: all cores)"
    )
    b.add_argument("--seed", type=int, default=0, help="seed of the train/validation/test assignment")
    b.add_argument(
        "--all-meters",
        action="store_true",
        help="also cut 3/4, 6/8... into 16-step bars (default: only meters of 16-step bars)",
    )
    b.add_argument(
        "--no-expand-repeats", action="store_true", help="music21: keep repeats as written instead of playing them out"
    )
    b.add_argument("--min-notes", type=int, default=16, help="drop windows with fewer notes (default 16)")
    b.add_argument("--shard-windows", type=int, default=50_000, help="windows per shard file")
    b.add_argument("--force", action="store_true", help="rebuild even if an identical dataset exists")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build)

    i = dsub.add_parser("info", help="print the summary of a built dataset")
    i.add_argument("path", nargs="?", help="dataset directory (default: the music21 corpus cache)")
    i.set_defaults(func=cmd_info)


def default_corpus_out(collections: list[str]) -> Path:
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS
    from melody_lc.paths import cache_dir

    name = "music21" if tuple(collections) == DEFAULT_COLLECTIONS else "music21-" + "-".join(collections)
    return cache_dir() / "datasets" / name


def cmd_build(args: argparse.Namespace) -> int:
    from melody_lc.cli import CLIError
    from melody_lc.melody.build import BuildPlan, build_dataset, midi_tasks, music21_tasks, reusable_build
    from melody_lc.melody.dataset import format_summary
    from melody_lc.melody.extract import ExtractionConfig
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS, list_midi_files, read_midi_file
    from melody_lc.paths import cache_dir

    if args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    if args.min_notes < 0 or args.shard_windows < 1:
        raise CLIError("--min-notes must be >= 0 and --shard-windows >= 1")
    config = ExtractionConfig(
        min_notes=args.min_notes, all_meters=args.all_meters, expand_repeats=not args.no_expand_repeats
    )
    if args.corpus:
        collections = args.collections.split(",") if args.collections else list(DEFAULT_COLLECTIONS)
        tasks = music21_tasks(collections)
        source = {"kind": "music21", "collections": collections}
        out = Path(args.out) if args.out else default_corpus_out(collections)
    elif args.midi_dir:
        root = Path(args.midi_dir)
        if not root.is_dir():
            raise CLIError(f"{root}: not a directory")
        files = list_midi_files(root)
        if not files:
            raise CLIError(f"{root}: no .mid or .midi files found")
        tasks = midi_tasks(files, root)
        source = {"kind": "midi", "dir": str(root.resolve())}
        digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
        out = Path(args.out) if args.out else cache_dir() / "datasets" / f"midi-{root.resolve().name}-{digest}"
    else:
        files = [Path(f) for f in args.midi]
        for f in files:  # a file named on the command line must be good: say so before any work
            if not f.is_file():
                raise CLIError(f"{f}: no such file")
            try:
                read_midi_file(f)
            except Exception as e:
                raise CLIError(f"{f}: {e}") from None
        tasks = midi_tasks(files)
        source = {"kind": "midi", "files": [str(f.resolve()) for f in files]}
        digest = hashlib.sha256("\0".join(source["files"]).encode()).hexdigest()[:8]
        out = Path(args.out) if args.out else cache_dir() / "datasets" / f"midi-files-{digest}"

    plan = BuildPlan(source=source, tasks=tasks, config=config, seed=args.seed)
    reused = None if args.force else reusable_build(plan, out)
    if reused is not None:
        print(format_summary(reused, out))
        return 0
    print(
        f"building {out} from {len(tasks):,} {'tunes' if args.corpus else 'files'} with {args.workers} worker(s)",
        file=sys.stderr,
    )
    try:
        manifest = build_dataset(
            plan, out, workers=args.workers, shard_windows=args.shard_windows, force=args.force, progress=not args.quiet
        )
    except KeyboardInterrupt:
        print(
            f"\nmelody-lc: interrupted; finished shards are kept in {out}.partial: "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except OSError as e:
        raise CLIError(f"{e.filename or out}: {e.strerror or e}") from None
    print(format_summary(manifest, out))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from melody_lc.melody.dataset import MelodyDataset, format_summary
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    path = Path(args.path) if args.path else default_corpus_out(list(DEFAULT_COLLECTIONS))
    ds = MelodyDataset(path)
    print(format_summary(ds.manifest, path))
    return 0
