"""Write docs/figures.md from the benchmarks themselves: each section is a benchmark's own output.

    python benchmarks/figures.py                   # every benchmark below (hours on 2 cores)
    python benchmarks/figures.py midi_reading      # rerun some; the other sections stay as they are
    python benchmarks/figures.py --rewrite         # run nothing: the page again from its sections

Each section holds the command, the machine it ran on (CPU model and SIMD flags, cores), the date,
and the benchmark's output verbatim, between markers that this script finds again on the next run.
Nothing in a section is typed by hand. Sections of benchmarks not rerun keep their earlier output
(and their machine and date), so figures from different machines stay apart and labelled.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "figures.md"

# name -> (arguments, what it measures, rough time on 2 cores)
BENCHMARKS = {
    "enforce_table": ([], "rules as requirements: every layer on every shipped example and ten more files", "40 min"),
    "enforce_table_parallel": (
        ["--capacity", "parallel decoder", "--actor-target"],
        "the same for the parallel model of capacity_table_parallel (half an hour of CPU time), on the "
        "files with an actor target",
        "25 min",
    ),
    "enforce_table_parallel_long": (
        ["--model", "runs/parallel", "--actor-target"],
        "the same for the long parallel run (25,537 steps, kept in runs/parallel), on the files with an actor target",
        "10 min",
    ),
    "latent_fitness": (
        ["--lambda-dist", "0.1", "0.02"],
        "how well a model's latent space serves the rules: the shipped LSTM against the long parallel run",
        "25 min",
    ),
    "latent_fitness_stages": (
        ["--model", "models/melody-16bar-folk", "--stages", "1", "2", "--temperatures", "0.5", "-n", "256", "--rules"]
        + [
            f"rules/{name}.rules"
            for name in (
                "c_major_busy",
                "any_key_major",
                "open_density",
                "pentatonic_calm",
                "blues_riff",
                "twelve_bar_blues",
                "two_keys",
                "aaba_song",
                "harmonic_minor_dance",
                "call_and_answer",
                "dorian_folk",
            )
        ],
        "fits of one stage against two (engine/fit.py): the shipped model on the examples of issue 15's targets",
        "10 min",
    ),
    "latent_fitness_temperature": (
        ["--model", "models/melody-16bar-folk", "--stages", "2", "3", "--temperatures", "0", "0.25", "0.5"]
        + ["-n", "256", "--rules", "rules/dorian_folk.rules", "rules/pentatonic_calm.rules"],
        "what caps the actor alone: the same actor's latents decoded at lower temperatures, and a third stage",
        "5 min",
    ),
    "latent_fitness_by_value": (
        ["--model", "models/melody-16bar-folk", "--temperatures", "0.5", "-n", "256", "--by-value", "--rules"]
        + ["rules/open_density.rules", "rules/any_key_major.rules"],
        "where a conditional actor falls short: the actor alone at each value of the open parameter",
        "10 min",
    ),
    "form_table": ([], "form, harmony and scopes: the files with chords, climax, form or scoped rules", "10 min"),
    "like_table": (
        [],
        "teach by example: like/unlike, latent distance and feature overlap with the examples",
        "10 min",
    ),
    "plan_morph": (
        [],
        "rules that change from phrase to phrase: a plan's sections and morph, as stream plays it",
        "3 min",
    ),
    "paper_table": ([], "the paper's melody table: prior, actor, gradient search, rejection, masked rows", "20 min"),
    "transform_identity": (
        [],
        "the composer's own tune kept: transform on held-out tunes, with and without keep",
        "8 min",
    ),
    "realism_overlap": ([], "sample through the realism actor: feature overlap with held-out tunes", "5 min"),
    "midi_reading": ([], "real MIDI files to windows: symusic against note_seq's pretty_midi path", "1 min"),
    "install_footprint": ([], "the README's install commands: time, disk, distributions", "8 min"),
    "extraction_throughput": (["--limit", "2000"], "music21 corpus to windows at 1 and 2 workers", "10 min"),
    "build_memory": ([], "peak memory of a MIDI-directory build", "2 min"),
    "mask_speed": ([], "decoding with and without the rules' masks at 16, 256 and 1024 melodies at once", "9 min"),
    "model_speed": ([], "training and sampling speed of the default preset, per GFLOP/s", "3 min"),
    "model_speed_no_bf16": (
        ["--no-bf16"],
        "the same on a CPU without bf16 (fp32 only), with an unsteered decode's bars in blocks of rows",
        "3 min",
    ),
    "model_speed_parallel": (
        ["--preset", "parallel"],
        "training and sampling speed of the parallel preset, per GFLOP/s",
        "2 min",
    ),
    "rules_speed": ([], "scoring speed of the rules", "1 min"),
    "chain_latency": ([], "note-in to note-out latency of chains on real ports", "2 min"),
    "live_timing": ([], "clock and phrase timing of the live engine", "3 min"),
    "jack_delivery": (
        [],
        "every message through a JACK port arrives once: asynchronous vs synchronous server",
        "2 min",
    ),
    "synth_latency": ([], "from note to sound: the built-in synth on JACK, beside a MIDI port", "2 min"),
    "render_speed": (
        [],
        "rendering melodies to audio: seconds of audio per second, and onsets where the notes start",
        "1 min",
    ),
    "latent_scale": ([], "the distance penalty's scale", "5 min"),
    "fit_choices": ([], "why the fit is built as it is: each of its choices undone in turn", "10 min"),
    "fit_rounds": ([], "why a file with a form rule is fitted for more rounds", "20 min"),
    "rest_pacing": ([], "where a rests rule's silence falls: paced by phrase, or left to the melody's end", "3 min"),
    "fit_time": ([], "how long a new three-rule file takes to fit, and the critics' training step", "6 min"),
    "image_table": (
        ["--mnist-5k", "--pictures", "docs"],
        "the paper's image table on real MNIST digits (4,000 to train, 1,000 held out)",
        "15 min",
    ),
    "image_table_digits": (["--digits"], "the same table on scikit-learn's UCI digits (not MNIST)", "40 min"),
    "learning_curve": ([], "accuracy against training time", "long"),
    "capacity_table": (
        ["--minutes", "15"],
        "which change to the VAE pays: candidates trained for equal CPU time, evaluated on held-out tunes",
        "90 min",
    ),
    "capacity_table_continued": (
        ["--minutes", "30", "shipped, continued", "shipped + free bits 1024, beta 0.1"],
        "the shipped run continued for half an hour of CPU time, as is and with a four times larger KL allowance",
        "35 min",
    ),
    "capacity_table_parallel": (
        ["--minutes", "30", "parallel decoder"],
        "the non-autoregressive parallel model trained from scratch for half an hour of CPU time",
        "35 min",
    ),
    "capacity_table_token_dropout": (
        [
            "--minutes",
            "30",
            "shipped + token dropout 0.5",
            "shipped + token dropout 0.5, free bits 1024, beta 0.1",
        ],
        "the shipped run continued for half an hour of CPU time with token dropout (the decoder must read z)",
        "35 min",
    ),
}
# sections that run another benchmark's script with other arguments
SCRIPTS = {
    "image_table_digits": "image_table",
    "capacity_table_continued": "capacity_table",
    "capacity_table_token_dropout": "capacity_table",
    "capacity_table_parallel": "capacity_table",
    "model_speed_parallel": "model_speed",
    "model_speed_no_bf16": "model_speed",
    "enforce_table_parallel": "enforce_table",
    "enforce_table_parallel_long": "enforce_table",
    "latent_fitness_stages": "latent_fitness",
    "latent_fitness_temperature": "latent_fitness",
    "latent_fitness_by_value": "latent_fitness",
}
HEADER = """# Figures

[melody-lc](../README.md) · [all docs](README.md)

Written by `python benchmarks/figures.py`: each section below is one benchmark's output, verbatim,
with the machine and date it ran on. Rerun one with `python benchmarks/figures.py NAME`.
"""


def machine() -> str:
    from melody_lc.melody.hardware import describe_hardware

    return f"{describe_hardware()}, {os.cpu_count()} cores"


def section(name: str, args: list[str], what: str, out: str) -> str:
    cmd = shlex.join(["python", f"benchmarks/{SCRIPTS.get(name, name)}.py", *args])
    return (
        f"<!-- figures:{name} -->\n{anchor(name)}\n## {name}: {what}\n\n`{cmd}` on {machine()}, "
        f"{datetime.date.today().isoformat()}:\n\n```\n{out.rstrip()}\n```\n<!-- /figures:{name} -->\n"
    )


def anchor(name: str) -> str:
    """What a link to figures.md#NAME finds (a heading's own anchor spells out its whole text)."""
    return f'<a id="{name}"></a>'


def existing() -> dict[str, str]:
    """The sections on the page now, by name."""
    text = PAGE.read_text() if PAGE.exists() else ""
    return {m[1]: m[0] for m in re.finditer(r"<!-- figures:(\w+) -->.*?<!-- /figures:\1 -->\n", text, re.S)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"benchmarks to rerun (default: all): {', '.join(BENCHMARKS)}")
    ap.add_argument("--rewrite", action="store_true", help="run nothing: rewrite the page from its sections")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    sections = existing()
    if args.rewrite:
        write(sections)
        return
    for name in args.names or list(BENCHMARKS):
        extra, what, cost = BENCHMARKS[name]
        print(f"running {name} (about {cost})", file=sys.stderr, flush=True)
        run = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / f"{SCRIPTS.get(name, name)}.py"), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            print(
                f"{name} failed (exit {run.returncode}); its section is kept as it was:\n{run.stderr[-2000:]}",
                file=sys.stderr,
            )
            continue
        sections[name] = section(name, extra, what, run.stdout)
        write(sections)  # after each benchmark: an interrupted run loses nothing


def write(sections: dict[str, str]) -> None:
    body = HEADER + "".join(f"\n{sections[n]}" for n in BENCHMARKS if n in sections)
    tmp = PAGE.with_suffix(".md.tmp")
    tmp.write_text(body)
    os.replace(tmp, PAGE)
    print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
