"""Rules as requirements: how each layer does, for every shipped example and the benchmark's own files.

    python benchmarks/enforce_table.py [--model DIR | --capacity NAME] [--data DIR] [-n 256]
        [--rules FILE ... | --actor-target]

For each rules file (default: rules/*.rules and benchmarks/rules/*.rules), with its fit (the shipped
one, a cached one, or fitted now from the statistics shipped beside the model), rows:

* prior                  the prior's own melodies, decoded as the model writes them
* prior + mask           the same latents decoded under the rules' constraints
* actor                  prior latents moved by the fitted actor (the paper's latent constraint)
* actor + mask           the actor's latents decoded under the constraints
* actor + mask + redraw  what `melody-lc generate` hands over: the above, verified by the exact
                         tests, a failing melody replaced by a fresh draw until n pass

Columns: share obeying every rule; decodes per delivered melody (redraw row); how often the mask
overruled the decoder per melody (the class the decoder drew was forbidden), and the probability
mass it removed; mean latent shift and spread (1: the prior's variety kept, near 0: one place);
feature overlap with held-out tunes on the features no rule of the file constrains; ms per
melody obeying every rule. Every row decodes at the fit temperature (0.5).

Also printed: the CPU and its flags, the float32 matmul reference measured in the same run, and
the speed of decoding with masks against decoding without: the actor's latents decoded and checked
both ways back to back, five times (after one turn to warm up), the median of the five ratios
(a shared machine's bursts of load would otherwise decide it).
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import numpy as np
import torch

from melody_lc.constrain import FIT_TEMPERATURE, decode_checked, fit_rules, generate, load_fit_stats, shipped_fits_dir
from melody_lc.engine import FitConfig, latent_spread
from melody_lc.melody.evaluate import FEATURE_BINS, features, histogram_overlap
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model
from melody_lc.paths import cache_dir
from melody_lc.rules import load_rules
from melody_lc.rules.plan import load_plan

# The features of melody/evaluate.py that each rule kind constrains (the rest are compared freely).
CONSTRAINS = {"key": "in_key_share", "density": "notes_per_bar", "range": "pitch_range", "leap": "intervals"}
ACTOR_TARGET = ("c_major_busy", "any_key_major", "open_density", "pentatonic_calm", "dorian_folk")


def free_overlap(rules, tokens: np.ndarray, heldout_features: dict) -> float | None:
    """Mean feature overlap with held-out data over the features no rule of the file constrains."""
    free = [f for f in FEATURE_BINS if f not in {CONSTRAINS.get(r.kind.name) for r in rules.rules}]
    if not free or not len(tokens):
        return None
    fs = features(tokens)
    return float(np.mean([histogram_overlap(fs[f], heldout_features[f], FEATURE_BINS[f]) for f in free]))


def fit_for(rules, model, stats, data: str):
    """The rules' fit: the shipped one, a cached one, or fitted now (from the statistics shipped
    beside the model, else from the dataset's training windows)."""
    from melody_lc.melody.dataset import MelodyDataset

    return fit_rules(
        rules,
        model,
        stats if stats is not None else (lambda: MelodyDataset(data).windows("train")),
        FitConfig(),
        cache_dir=cache_dir() / "fits",
        search=(shipped_fits_dir(),),
    )


def mask_speed(rules, model, fitted, n: int, pairs: int = 5) -> float:
    """Decoding with masks over decoding without, as speeds (1: as fast), on the same actor
    latents: the median over ``pairs`` turns of the two back to back (a shared machine's bursts of
    load fall on both halves of a pair, so the median of the pairs' ratios is steadier than either time)."""
    return mask_times(rules, model, fitted, n, pairs)[0]


def mask_times(rules, model, fitted, n: int, pairs: int = 5) -> tuple[float, float, float]:
    """:func:`mask_speed`'s ratio, and the median seconds of the decodes without and with masks."""
    rng = np.random.default_rng(1)
    cond = rules.sample_conditions(n, rng) if rules.open else None
    cvec = torch.from_numpy(rules.condition_vector(cond)) if cond else torch.zeros(n, 0)
    with torch.no_grad():
        z = fitted.actor(torch.randn(n, model.config.z_size, generator=torch.Generator().manual_seed(1)), cvec)
    ratios, seconds = [], {False: [], True: []}
    for turn in range(pairs + 1):
        pair = {}
        for masked in (False, True):
            t = time.perf_counter()
            decode_checked(rules, model, z, cond, FIT_TEMPERATURE, torch.Generator().manual_seed(2), mask=masked)
            pair[masked] = time.perf_counter() - t
        if turn:  # the first pair warms up
            ratios.append(pair[False] / pair[True])
            for masked, took in pair.items():
                seconds[masked].append(took)
    return float(np.median(ratios)), float(np.median(seconds[False])), float(np.median(seconds[True]))


def measure(rules, model, fitted, n: int, held: dict, share_bars: bool = True) -> dict:
    """The five rows for one rules file and its fit: row -> figures (and the row's tokens). With
    ``share_bars=False`` a form's repeats are left to the mask alone (the redraw row is skipped)."""
    T = FIT_TEMPERATURE
    g = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    cond = rules.sample_conditions(n, rng) if rules.open else None
    cvec = torch.from_numpy(rules.condition_vector(cond)) if cond else torch.zeros(n, 0)
    z = torch.randn(n, model.config.z_size, generator=g)
    with torch.no_grad():
        z2 = fitted.actor(z, cvec)
    shift = float((z2 - z).norm(dim=-1).mean())
    spread = latent_spread(z, z2)
    rows = {}
    for row, latents, masked in (
        ("prior", z, False),
        ("prior + mask", z, True),
        ("actor", z2, False),
        ("actor + mask", z2, True),
    ):
        t = time.perf_counter()
        c = decode_checked(
            rules, model, latents, cond, T, torch.Generator().manual_seed(2), mask=masked, share_bars=share_bars
        )
        seconds = time.perf_counter() - t
        rows[row] = dict(
            all=c.ok.mean(),
            decodes=None,
            mask=c.interventions.mean() if masked else None,
            mass=c.mass_removed.mean() if masked else None,
            shift=0.0 if row.startswith("prior") else shift,
            spread=1.0 if row.startswith("prior") else spread,
            overlap=free_overlap(rules, c.tokens, held),
            seconds=seconds,
            ok=int(c.ok.sum()),
            tokens=c.tokens,
            by_rule=c.by_rule.mean(0) if masked else None,
        )
    if not share_bars:
        return rows
    t = time.perf_counter()
    tokens, report = generate(rules, model, n, fitted, seed=3, temperature=T)
    seconds = time.perf_counter() - t
    rows["actor + mask + redraw"] = dict(
        all=len(tokens) / n,
        decodes=report["decodes_per_melody"],
        mask=report["interventions_per_melody"],
        mass=report["mass_removed_per_melody"],
        shift=report["mean_latent_shift"],
        spread=report["spread"],
        overlap=free_overlap(rules, tokens, held),
        seconds=seconds,
        ok=len(tokens),
        tokens=tokens,
        by_rule=None,
    )
    return rows


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.dataset import MelodyDataset
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument(
        "--capacity",
        metavar="NAME",
        help="instead, the model of benchmarks/capacity_table.py's 30-minute run of candidate NAME",
    )
    ap.add_argument(
        "--data",
        default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))),
        help="dataset whose test split is the held-out data for the feature overlap",
    )
    ap.add_argument("-n", type=int, default=256, help="melodies per row")
    ap.add_argument("--rules", nargs="+", help="rules files (default: rules/*.rules and benchmarks/rules/*.rules)")
    ap.add_argument("--actor-target", action="store_true", help="only the shipped examples with an actor target")
    args = ap.parse_args()

    gflops = matmul_gflops()
    print(
        f"{describe_hardware()}; float32 matmul {gflops:.0f} GFLOP/s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    if args.capacity:
        from capacity_table import CANDIDATES, run_dir

        if args.capacity not in CANDIDATES:
            ap.error(f"unknown capacity_table candidate {args.capacity!r}: {', '.join(CANDIDATES)}")
        args.model = run_dir(args.capacity)
        if not (args.model / "cpu.json").exists():
            ap.error(
                f"no finished run of {args.capacity!r}: run `python benchmarks/capacity_table.py '{args.capacity}'`"
            )
    model, meta = load_model(args.model or default_model_dir())
    stats = load_fit_stats(args.model or default_model_dir(), model)
    what = f"capacity_table's run {args.capacity!r}" if args.capacity else args.model or "the shipped model"
    print(f"model: {what} ({model.config.decoder} decoder, {meta['steps']} steps)")
    heldout = MelodyDataset(args.data).windows("test")
    held = features(heldout)
    if args.actor_target:
        args.rules = [f"rules/{name}.rules" for name in ACTOR_TARGET]
    files = args.rules or [  # a file of phrase sections has its own benchmark, benchmarks/plan_morph.py
        f
        for f in sorted(glob.glob("rules/*.rules")) + sorted(glob.glob("benchmarks/rules/*.rules"))
        if not load_plan(f).sectioned
    ]
    T = FIT_TEMPERATURE
    print(
        f"\n{args.n} melodies per row, decoded at temperature {T:g}; held-out: {len(heldout)} test windows of the {Path(args.data).name} dataset"
    )
    print(
        "| rules | row | all rules | decodes/melody | mask/melody | mass removed | latent shift | spread | "
        "free overlap | ms/obeying melody |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for path in files:
        rules = load_rules(path)
        name = Path(path).stem
        fitted = fit_for(rules, model, stats, args.data)
        rows = measure(rules, model, fitted, args.n, held)
        for row, r in rows.items():

            def f(v, fmt):
                return "—" if v is None else format(v, fmt)

            ms = f"{r['seconds'] / r['ok'] * 1000:.0f}" if r["ok"] else "∞"
            print(
                f"| {name} | {row} | {r['all']:.1%} | {f(r['decodes'], '.2f')} | {f(r['mask'], '.2f')} | "
                f"{f(r['mass'], '.2f')} | {r['shift']:.2f} | {r['spread']:.2f} | {f(r['overlap'], '.3f')} | {ms} |"
            )
        summary.append((name, rows, mask_speed(rules, model, fitted, args.n), fitted.meta.get("seconds")))

    print("\nfor rules/README.md (the shipped examples)")
    print("| file | actor alone | delivered | decodes per melody | mask per melody: prior -> actor | fit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows, _, fitted_s in summary:
        if Path(f"rules/{name}.rules").exists():
            d = rows["actor + mask + redraw"]
            print(
                f"| `{name}.rules` | {rows['actor']['all']:.1%} | {d['all']:.0%} | {d['decodes']:.2f} | "
                f"{rows['prior + mask']['mask']:.1f} -> {rows['actor + mask']['mask']:.1f} | {fitted_s:.0f} s |"
            )

    print("\nsummary")
    decodes = [rows["actor + mask + redraw"]["decodes"] or float("inf") for _, rows, _, _ in summary]
    delivered = [rows["actor + mask + redraw"]["all"] for _, rows, _, _ in summary]
    print(
        f"  delivered: {np.mean(delivered):.1%} of requested on average, lowest {min(delivered):.1%}; "
        f"decodes per delivered melody {np.mean(decodes):.2f} on average (target <= 1.5)"
    )
    for name, rows, speed, fitted_s in summary:
        prior, actor = rows["prior + mask"]["mask"], rows["actor + mask"]["mask"]
        target = " (actor target >= 80%)" if name in ACTOR_TARGET else ""
        print(
            f"  {name}: mask interventions actor/prior {actor / prior if prior else float('nan'):.2f} "
            f"(target <= 0.20); actor alone {rows['actor']['all']:.1%}{target}; decoding with masks "
            f"{speed:.2f}x the speed without (target >= 0.80); fit {fitted_s} s when fitted"
        )


if __name__ == "__main__":
    main()
