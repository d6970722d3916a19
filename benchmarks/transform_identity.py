"""The composer's own tune keeps its identity: `transform` on held-out tunes, with and without the
decode that remembers the input (``keep``: logits in favour of the input's token at each step).

    python benchmarks/transform_identity.py [--tunes 32] [--keep 0 4 8]

Four cases, each on held-out tunes (the test split) that break its rules:
* neighbouring key   rules/any_key_major.rules with the tonic a fifth above the tune's own major
                     key (one pitch class must move: the fourth degree, raised)
* narrow range       benchmarks/rules/identity/narrow_range.rules (D4 .. D5)
* small leaps        benchmarks/rules/identity/small_leaps.rules (leap <= 4 semitones)
* busy               benchmarks/rules/identity/busy.rules (>= 4 notes per bar)
and, as a check, tunes that already obey any_key_major in their own key (handed back unchanged).

Columns: share of results obeying every rule; notes kept (same onset and pitch) of all the
tune's notes, and of the notes the rules did not require to change (key: notes out of the target
scale, range: notes outside it, leap: the second note of each leap that is too wide; busy: none);
notes changed per tune; mask interventions per tune (how often the rules overruled the decoder:
the naturalness of issue 9); seconds per tune. Also printed: the CPU and the matmul reference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from melody_lc.constrain import fit_rules, load_fit_stats, shipped_fits_dir, transform
from melody_lc.constrain.enforce import KEEP
from melody_lc.engine import FitConfig
from melody_lc.melody.encoding import NUM_PITCHES
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.pitches import MODES
from melody_lc.melody.train import load_model
from melody_lc.paths import cache_dir
from melody_lc.rules import load_rules

ROOT = Path(__file__).resolve().parents[1]
MAJOR = np.array(sorted(MODES["major"]))


def notes(tune: np.ndarray) -> list[tuple[int, int]]:
    return [(int(s), int(tune[s])) for s in np.flatnonzero(tune < NUM_PITCHES)]


def major_key(tune: np.ndarray) -> tuple[int, float]:
    """The major key holding most of the tune's notes, and that share."""
    pcs = np.array([p % 12 for _, p in notes(tune)])
    shares = [np.isin(pcs, (MAJOR + k) % 12).mean() for k in range(12)]
    return int(np.argmax(shares)), float(max(shares))


def out_of_key(tune, tonic) -> set[int]:
    return {s for s, p in notes(tune) if (p - tonic) % 12 not in MAJOR}


def outside(lo: int, hi: int):
    return lambda tune, _: {s for s, p in notes(tune) if not lo <= p <= hi}


def too_wide(most: int):
    def required(tune, _):
        ns = notes(tune)
        return {s for (_, a), (s, b) in zip(ns, ns[1:]) if abs(b - a) > most}

    return required


CASES = (  # name, rules file, the tune's open values (or None), the notes the rules require to change
    ("neighbouring key", "rules/any_key_major.rules", lambda t: {"tonic": (major_key(t)[0] + 7) % 12}, None),
    ("narrow range", "benchmarks/rules/identity/narrow_range.rules", None, outside(62, 74)),
    ("small leaps", "benchmarks/rules/identity/small_leaps.rules", None, too_wide(4)),
    ("busy", "benchmarks/rules/identity/busy.rules", None, lambda t, v: set()),
)


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.dataset import MelodyDataset
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("--tunes", type=int, default=32, help="held-out tunes per case")
    ap.add_argument("--keep", type=float, nargs="+", default=[0.0, KEEP / 2, KEEP])
    args = ap.parse_args()
    gflops = matmul_gflops()
    print(f"{describe_hardware()}; float32 matmul {gflops:.0f} GFLOP/s; torch {torch.__version__}")
    model, _ = load_model(args.model)
    stats = load_fit_stats(args.model, model)
    held = MelodyDataset(args.data).windows("test").astype(np.int64)
    order = np.random.default_rng(0).permutation(len(held))
    tonal = [i for i in order if len(notes(held[i])) >= 16 and major_key(held[i])[1] >= 0.9]
    print(
        f"held-out: {len(held)} test windows of {Path(args.data).name}; {args.tunes} tunes per case; default keep {KEEP:g}"
    )
    print(
        "\n| case | keep | obey every rule | notes kept | kept where not required | notes changed | mask/tune | s/tune |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path, values_of, required in CASES:
        rules = load_rules(ROOT / path)
        fitted = fit_rules(
            rules,
            model,
            stats if stats is not None else (lambda: MelodyDataset(args.data).windows("train")),
            FitConfig(),
            cache_dir=cache_dir() / "fits",
            search=(shipped_fits_dir(),),
        )
        picked, vals = [], []
        for i in tonal:
            v = values_of(held[i]) if values_of else None
            cond = rules.fixed_conditions(1, **v) if v else None
            if not rules.satisfied(held[i][None], cond).all():
                picked.append(i)
                vals.append(v)
            if len(picked) == args.tunes:
                break
        for keep in args.keep:
            kept, kept_free, changed, ok, mask, secs = [], [], [], [], [], 0.0
            for i, v in zip(picked, vals):  # one at a time: each tune has its own open values
                t = time.perf_counter()
                out, report = transform(held[i], rules, model, fitted, values=v, keep=keep)
                secs += time.perf_counter() - t
                before = dict(notes(held[i]))
                after = dict(notes(out[0]))
                need = required(held[i], v) if required else out_of_key(held[i], v["tonic"])
                free = [s for s in before if s not in need]
                kept.append(np.mean([after.get(s) == p for s, p in before.items()]))
                kept_free.append(np.mean([after.get(s) == before[s] for s in free]) if free else 1.0)
                changed.append(len(report["changed"][0]))
                ok.append(report["all_rules"])
                mask.append(report["interventions_per_melody"])
            n = len(picked)
            print(
                f"| {name} | {keep:g} | {np.mean(ok):.0%} | {np.mean(kept):.0%} | {np.mean(kept_free):.0%} | "
                f"{np.mean(changed):.1f} | {np.mean(mask):.1f} | {secs / n:.2f} |"
            )
    rules = load_rules(ROOT / "rules/any_key_major.rules")
    fitted = fit_rules(rules, model, stats, FitConfig(), cache_dir=cache_dir() / "fits", search=(shipped_fits_dir(),))
    obeying = [i for i in tonal if major_key(held[i])[1] == 1.0][: args.tunes]
    kept = []
    for i in obeying:
        out, report = transform(held[i], rules, model, fitted, values={"tonic": major_key(held[i])[0]})
        kept.append(np.mean([dict(notes(out[0])).get(s) == p for s, p in notes(held[i])]))
    print(f"\n{len(obeying)} tunes that already obey any_key_major in their own key: {np.mean(kept):.0%} of notes kept")


if __name__ == "__main__":
    main()
