"""Form, harmony and time: the rules files that use scopes, chords, the climax and the form.

    python benchmarks/form_table.py [--model DIR] [--data DIR] [-n 256] [--rules FILE ...]

For each file (default: the files of rules/ and benchmarks/rules/ that use one of these), with its
fit (shipped, cached, or fitted now from the statistics shipped beside the model), the rows of
benchmarks/enforce_table.py: prior and actor as the decoder writes them, each under the rules'
constraints, and what `melody-lc generate` delivers. Columns: share obeying every rule, decodes per
delivered melody, the mask's interventions per melody (in all, and the form rule's), and the share
of pairs of 4-bar phrases that repeat note for note (held-out tunes: printed as the reference).

Then, for each file with a form: the form's repeats decoded from the first statement's conductor
embeddings (the decoder's own structure) against the mask alone, with the prior's and the actor's
latents: the form rule's interventions per melody with and without.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import torch
from enforce_table import fit_for, measure

from melody_lc.constrain import load_fit_stats
from melody_lc.melody import metrics
from melody_lc.melody.evaluate import features
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model
from melody_lc.rules import load_rules
from melody_lc.rules.plan import load_plan

KINDS = ("chords", "climax", "form")


def uses_form_kinds(rules) -> bool:
    return any(r.kind.name in KINDS or r.scope is not None for r in rules.rules)


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.dataset import MelodyDataset
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("-n", type=int, default=256, help="melodies per row")
    ap.add_argument("--rules", nargs="+")
    args = ap.parse_args()

    print(f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}")
    model, _ = load_model(args.model)
    stats = load_fit_stats(args.model, model)
    heldout = MelodyDataset(args.data).windows("test")
    held = features(heldout)
    files = args.rules or [
        f
        for f in sorted(glob.glob("rules/*.rules")) + sorted(glob.glob("benchmarks/rules/*.rules"))
        if not load_plan(f).sectioned and uses_form_kinds(load_rules(f))  # plans: benchmarks/plan_morph.py
    ]
    print(
        f"{args.n} melodies per row; held-out: {len(heldout)} test windows, of whose 4-bar phrase pairs "
        f"{metrics.phrase_repeats(heldout).mean():.1%} repeat note for note"
    )
    print("\n| rules | row | all rules | decodes/melody | mask/melody | form mask/melody | phrase repeats |")
    print("|---|---|---:|---:|---:|---:|---:|")
    shared, readme = [], []
    for path in files:
        rules = load_rules(path)
        name = Path(path).stem
        fitted = fit_for(rules, model, stats, args.data)
        form = next((i for i, r in enumerate(rules.rules) if r.kind.name == "form"), None)
        rows = measure(rules, model, fitted, args.n, held)
        for row, r in rows.items():
            decodes = "—" if r["decodes"] is None else f"{r['decodes']:.2f}"
            mask = "—" if r["mask"] is None else f"{r['mask']:.1f}"
            fmask = "—" if form is None or r["by_rule"] is None else f"{r['by_rule'][form]:.1f}"
            repeats = metrics.phrase_repeats(r["tokens"]).mean() if len(r["tokens"]) else float("nan")
            print(f"| {name} | {row} | {r['all']:.1%} | {decodes} | {mask} | {fmask} | {repeats:.1%} |")
        if form is not None:
            alone = measure(rules, model, fitted, args.n, held, share_bars=False)
            shared.append((name, form, rows, alone, rules.bar_source() is not None))
        if Path(f"rules/{name}.rules").exists():
            readme.append((name, rows))

    if readme:
        print("\nfor rules/README.md (the shipped examples)")
        print("| file | actor alone | delivered | decodes per melody | mask per melody: prior -> actor |")
        print("|---|---:|---:|---:|---:|")
        for name, rows in readme:
            d = rows["actor + mask + redraw"]
            print(
                f"| `{name}.rules` | {rows['actor']['all']:.1%} | {d['all']:.0%} | {d['decodes']:.2f} | "
                f"{rows['prior + mask']['mask']:.1f} -> {rows['actor + mask']['mask']:.1f} |"
            )

    if shared:
        print("\nthe form's repeats: shared conductor embeddings and the mask, against the mask alone")
        print(
            "| rules | latents | form mask/melody, mask alone | with shared embeddings | all mask/melody: alone -> shared |"
        )
        print("|---|---|---:|---:|---:|")
        for name, form, rows, alone, _ in shared:
            for lat in ("prior", "actor"):
                a, s = alone[f"{lat} + mask"], rows[f"{lat} + mask"]
                print(
                    f"| {name} | {lat} | {a['by_rule'][form]:.1f} | {s['by_rule'][form]:.1f} | "
                    f"{a['mask']:.1f} -> {s['mask']:.1f} |"
                )
        repeats = [(f, rows, alone) for _, f, rows, alone, repeated in shared if repeated]
        if repeats:
            left = [
                rows["actor + mask"]["by_rule"][f] / max(alone["actor + mask"]["by_rule"][f], 1e-9)
                for f, rows, alone in repeats
            ]
            print(
                f"actor: shared embeddings leave {np.mean(left):.2f} of the form's interventions on average "
                f"(the {len(repeats)} forms that repeat a phrase note for note)"
            )


if __name__ == "__main__":
    main()
