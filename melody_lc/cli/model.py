"""``melody-lc train | evaluate | sample | reconstruct | interpolate``: the melody VAE."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from melody_lc.choices import AUDIO_FORMATS
from melody_lc.cli import checks

DEFAULT_MODEL_NAME = "melody-16bar-folk"
INDEX_DIGITS = 4  # melody-0000.mid, melody-0001.mid, ...
OUT_HELP = "a folder used before keeps only this run's melodies"  # what _write_all does to it


def register(sub: argparse._SubParsersAction) -> None:
    from melody_lc.cli.audio import output_options

    e = sub.add_parser("evaluate", help="held-out accuracies, ELBO, KL and feature overlap of prior samples")
    e.add_argument("--model", metavar="DIR", help=f"checkpoint (default: the shipped {DEFAULT_MODEL_NAME})")
    e.add_argument("--data", metavar="PATH", help="dataset directory (default: the music21 corpus dataset)")
    e.add_argument("--split", default="test", choices=["validation", "test"])
    e.add_argument("--limit", type=int, default=0, help="evaluate on at most this many windows (0: all)")
    e.add_argument("--samples", type=int, default=1024, help="prior samples for the feature overlap")
    e.add_argument("--temperature", type=checks.temperature, default=1.0)
    e.add_argument("--json", metavar="FILE", type=checks.out_file, help="also write the figures to FILE")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", help="write melodies sampled from the model (through its realism actor) as .mid files")
    s.add_argument("-n", type=int, default=8, help="how many (default 8)")
    s.add_argument(
        "--out", metavar="DIR", type=checks.out_folder, default="samples", help=f"default samples; {OUT_HELP}"
    )
    s.add_argument("--temperature", type=checks.temperature, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--no-realism",
        action="store_true",
        help="decode the prior itself (default: through the model's realism actor, where it has one)",
    )
    _add_model_and_midi_options(s)
    output_options(s)
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("reconstruct", help="encode a melody and decode it again")
    r.add_argument("input", metavar="IN.mid")
    r.add_argument(
        "--out", metavar="OUT.mid", type=checks.out_file, help="default: IN.reconstructed.mid beside the input"
    )
    _add_model_and_midi_options(r)
    r.set_defaults(func=cmd_reconstruct)

    x = sub.add_parser(
        "export",
        help="write a trained checkpoint as a small shippable model with its model card",
        description="Copy a training checkpoint's weights (fp16 by default) and config into a model "
        "directory, with a model card built from the checkpoint's metadata and the JSON written by "
        "`melody-lc evaluate --json`.",
    )
    x.add_argument("checkpoint", metavar="RUN_DIR")
    x.add_argument("--out", metavar="DIR", type=checks.out_folder, required=True)
    x.add_argument("--eval", metavar="EVAL.json", required=True, help="figures from `melody-lc evaluate --json`")
    x.add_argument("--name", default=DEFAULT_MODEL_NAME)
    x.add_argument("--fp32", action="store_true", help="keep float32 weights (default: fp16, half the size)")
    x.set_defaults(func=cmd_export)

    i = sub.add_parser("interpolate", help="melodies on the latent path from one melody to another")
    i.add_argument("a", metavar="A.mid")
    i.add_argument("b", metavar="B.mid")
    i.add_argument("--steps", type=int, default=5, help="melodies on the path, ends included (default 5)")
    i.add_argument(
        "--out",
        metavar="DIR",
        type=checks.out_folder,
        default="interpolation",
        help=f"default interpolation; {OUT_HELP}",
    )
    _add_model_and_midi_options(i)
    i.set_defaults(func=cmd_interpolate)


def _add_model_and_midi_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help=f"checkpoint (default: the shipped {DEFAULT_MODEL_NAME})")
    p.add_argument("--bpm", type=float, default=120.0, help="tempo of the written files")
    p.add_argument("--program", type=int, default=0, help="General MIDI program 0-127 (default 0, piano)")


# --------------------------------------------------------------------------------------------------
def default_model_dir() -> Path:
    from melody_lc.paths import shipped_dir

    return shipped_dir("models") / DEFAULT_MODEL_NAME


def model_dir(args) -> Path:
    """The model checkpoint folder of --model, or the shipped one."""
    return Path(args.model) if getattr(args, "model", None) else default_model_dir()


def _load(args):
    from melody_lc.checkpoint import CheckpointError
    from melody_lc.cli import CLIError
    from melody_lc.melody.train import load_model

    path = model_dir(args)
    try:
        return load_model(path)
    except CheckpointError as e:
        hint = "" if args.model else " (no shipped model yet: train one with `melody-lc train` and pass --model)"
        raise CLIError(f"{e}{hint}") from None


def _dataset(path_arg):
    from melody_lc.cli import CLIError
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.melody.dataset import MelodyDataset
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    path = Path(path_arg) if path_arg else default_corpus_out(list(DEFAULT_COLLECTIONS))
    if not (path / "manifest.json").exists():
        raise CLIError(f"{path}: no dataset there; build one with `melody-lc data build --corpus music21`")
    return MelodyDataset(path)


def _check_midi_options(args) -> None:
    from melody_lc.cli import CLIError

    if not 0 <= args.program <= 127:
        raise CLIError(f"--program must be 0-127, got {args.program}")
    if not 20 <= args.bpm <= 400:
        raise CLIError(f"--bpm must be between 20 and 400, got {args.bpm}")
    if getattr(args, "audio", None) or getattr(args, "play", False):  # a bad sound font said before any work
        from melody_lc.audio.soundfonts import find_soundfont

        find_soundfont(args.soundfont)


def read_user_melody(path: str):
    """A user's MIDI file as one 16-bar Melody, and a note when it had to be cut or padded."""
    import numpy as np

    from melody_lc.cli import CLIError
    from melody_lc.melody import Melody
    from melody_lc.melody.encoding import BAR_STEPS, NUM_BARS, STEPS
    from melody_lc.melody.extract import quantized_notes
    from melody_lc.melody.sources import read_midi_file

    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{p}: is a directory; expected a MIDI file")
    if not p.is_file():
        raise CLIError(f"{p}: no such file")
    try:
        seq = read_midi_file(p)
        notes = quantized_notes(seq)
    except Exception as e:
        raise CLIError(f"{p}: {e}") from None
    notes = notes[~notes["is_drum"]]
    if len(notes) == 0:
        raise CLIError(f"{p}: no notes (drums are ignored)")
    if not (notes["start"] < STEPS).any():  # the model reads the first NUM_BARS bars
        first = int(notes["start"].min()) // BAR_STEPS + 1
        raise CLIError(
            f"{p}: no notes in its first {NUM_BARS} bars (the first is in bar {first}); melody-lc reads those"
        )
    bars = -(-int(notes["end"].max()) // BAR_STEPS)
    note = None
    if bars > NUM_BARS:
        note = f"{p.name}: {bars} bars, cut to the first {NUM_BARS}"
    elif bars < NUM_BARS:
        note = f"{p.name}: {bars} bar{'s' if bars != 1 else ''}, padded with silence to {NUM_BARS}"
    order = np.argsort(notes["start"], kind="stable")
    starts, ends = notes["start"][order], notes["end"][order]
    if np.any(starts[1:] < np.maximum.accumulate(ends)[:-1]):
        note = (note + "; " if note else f"{p.name}: ") + "overlapping notes reduced to the highest line"
    return Melody.from_piece(seq), note


def _write(melody, path: Path, args, chords=None) -> None:
    from melody_lc.melody import Melody

    Melody(melody).to_midi_file(path, qpm=args.bpm, program=args.program, chords=chords)


def _write_all(tokens, prefix: str, args, chords=None) -> None:
    """Each melody to OUT/PREFIX-0000.mid ...; with ``chords`` (per half bar), a chord track too;
    then the audio or playback that --audio and --play ask for. OUT then holds this run's melodies
    only: those of an earlier run into the same folder beyond this run's count (and their audio)
    are removed, so that the folder and its report agree."""
    from melody_lc.cli import CLIError
    from melody_lc.cli.audio import after_writing

    out = Path(args.out)
    paths = [out / f"{prefix}-{k:0{INDEX_DIGITS}d}.mid" for k in range(len(tokens))]
    if clash := next((p for p in paths if p.is_dir()), None):
        raise CLIError(f"{clash}: is a folder; a melody is to be written there")
    for t, path in zip(tokens, paths):
        _write(t, path, args, chords)
    print(f"wrote {len(tokens)} melodies to {out}/")
    clear_earlier_run(out, prefix, len(tokens))
    after_writing(paths, args)


def clear_earlier_run(out: Path, prefix: str, n: int) -> None:
    """Remove what an earlier run wrote into ``out`` that this run of n melodies does not write
    again: its melodies from PREFIX-n on, and every melody's audio (stale beside a new melody; this
    run's --audio writes its own). Only names melody-lc gives (PREFIX-0000.mid, .wav, .flac) are
    touched; what was removed is said."""
    import re

    name = re.compile(rf"{re.escape(prefix)}-(\d{{{INDEX_DIGITS}}})\.(mid|{'|'.join(AUDIO_FORMATS)})")
    earlier = [(p, name.fullmatch(p.name)) for p in out.glob(f"{prefix}-*")] if out.is_dir() else []
    gone = [(p, int(m[1])) for p, m in earlier if m and p.is_file() and (int(m[1]) >= n or m[2] != "mid")]
    for p, _ in gone:
        p.unlink()
    if gone:
        first, last = min(k for _, k in gone), max(k for _, k in gone)
        kinds = ", ".join(sorted({p.suffix for p, _ in gone}))
        span = f"{prefix}-{first:0{INDEX_DIGITS}d}" + (f" to {prefix}-{last:0{INDEX_DIGITS}d}" if last > first else "")
        print(
            f"removed {len(gone)} file{'s' if len(gone) != 1 else ''} of an earlier run from {out}/: {span} ({kinds})"
        )


# --------------------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from melody_lc.fileio import write_json
    from melody_lc.melody.evaluate import evaluate

    model, meta = _load(args)
    ds = _dataset(args.data)
    trained_on = meta.get("data_fingerprint")
    if trained_on and trained_on != ds.manifest["fingerprint"]:
        print(
            f"melody-lc: note: this model was trained on another dataset (fingerprint {trained_on}, this one "
            f"{ds.manifest['fingerprint']}): its {args.split} split may hold tunes the model has seen",
            file=sys.stderr,
        )
    heldout = ds.windows(args.split)
    if args.limit:
        heldout = heldout[: args.limit]
    from melody_lc.constrain.realism import load_realism

    realism = load_realism(model_dir(args), model)
    result = evaluate(model, heldout, num_samples=args.samples, temperature=args.temperature, realism=realism)
    result["split"] = args.split
    print(json.dumps(result, indent=1))
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_sample(args) -> int:
    import torch

    from melody_lc.cli import CLIError

    _check_midi_options(args)
    if args.n < 1:
        raise CLIError(f"-n must be at least 1, got {args.n}")
    from melody_lc.constrain.realism import load_realism
    from melody_lc.melody.hardware import use_bf16

    model, _ = _load(args)
    gen = torch.Generator().manual_seed(args.seed)
    bf16 = use_bf16("auto", torch.device("cpu"))
    realism = None if args.no_realism else load_realism(model_dir(args), model)
    tokens = model.sample(args.n, args.temperature, gen, bf16=bf16, move=realism).numpy()
    if realism is not None:
        print(
            "note: through the model's realism actor, toward real tunes (--no-realism: the prior itself)",
            file=sys.stderr,
        )
    _write_all(tokens, "sample", args)
    return 0


def cmd_reconstruct(args) -> int:
    import torch

    _check_midi_options(args)
    melody, note = read_user_melody(args.input)
    if note:
        print(f"note: {note}", file=sys.stderr)
    model, _ = _load(args)
    mu, _ = model.encode(torch.from_numpy(melody.tokens.astype("int64"))[None])
    tokens = model.decode(mu, temperature=0)[0].numpy()
    out = Path(args.out) if args.out else Path(args.input).with_suffix(".reconstructed.mid")
    _write(tokens, out, args)
    same = float((tokens == melody.tokens).mean())
    print(f"wrote {out} ({same:.0%} of steps as in the input)")
    return 0


def cmd_interpolate(args) -> int:
    import torch

    from melody_lc.cli import CLIError

    _check_midi_options(args)
    if args.steps < 2:
        raise CLIError(f"--steps must be at least 2, got {args.steps}")
    ma, na = read_user_melody(args.a)
    mb, nb = read_user_melody(args.b)
    for n in (na, nb):
        if n:
            print(f"note: {n}", file=sys.stderr)
    model, _ = _load(args)
    with torch.inference_mode():
        mu, _ = model.encode(torch.stack([torch.from_numpy(m.tokens.astype("int64")) for m in (ma, mb)]))
        za, zb = mu[0], mu[1]
        # spherical interpolation between the posterior means (as MusicVAE), linear when they are parallel
        omega = torch.arccos(torch.clamp(torch.dot(za / za.norm(), zb / zb.norm()), -1, 1))
        ts = torch.linspace(0, 1, args.steps)
        if float(omega) < 1e-4:
            z = torch.stack([(1 - t) * za + t * zb for t in ts])
        else:
            z = torch.stack(
                [(torch.sin((1 - t) * omega) * za + torch.sin(t * omega) * zb) / torch.sin(omega) for t in ts]
            )
        tokens = model.decode(z, temperature=0).numpy()
    _write_all(tokens, "interp", args)
    return 0


def cmd_export(args) -> int:
    import torch

    from melody_lc import checkpoint
    from melody_lc.cli import CLIError
    from melody_lc.melody.model_card import model_card
    from melody_lc.melody.train import KIND

    try:
        checkpoint.check_target(args.out, KIND, training=False)
        ck = checkpoint.load(args.checkpoint, KIND)
        figures = json.loads(Path(args.eval).read_text())
    except (OSError, ValueError) as e:
        raise CLIError(f"{args.eval}: {e}") from None
    card = model_card(args.name, ck["config"], ck["meta"], figures)
    checkpoint.save(
        args.out,
        KIND,
        ck["config"],
        ck["weights"],
        meta={**ck["meta"], "evaluation": figures},
        dtype=None if args.fp32 else torch.float16,
        extra_files={"MODEL_CARD.md": card},
    )
    size = sum(f.stat().st_size for f in Path(args.out).iterdir()) / 1e6
    print(f"wrote {args.out} ({size:.1f} MB)")
    return 0
