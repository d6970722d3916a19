"""Rules that change from phrase to phrase: a plan's sections and morphs, played as `stream` plays them.

    python benchmarks/plan_morph.py [--rules rules/sparse_to_busy.rules] [--walks 64] [--model DIR]

Each walk is a stream of its own (the live engine's phrase maker, seeded), played through one turn
of the plan: as the model writes the walk (prior), through the actors without mask or redraws
(actor), and as `stream` delivers it. For each phrase of the plan it prints: what plays there, the
share of phrases that obey every rule they are held to (a section's own, or in a morph the rules
every phrase shares) in each of the three, and of what is delivered:
the share that meet every rule of the section before and of the section after (for a morph, how
far it has come), the mean notes per bar, the mask's interventions per phrase, and the redraws.
The fits are the shipped ones, a cached one, or made now (from the statistics shipped beside the
model).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from enforce_table import fit_for

from melody_lc.constrain import load_fit_stats
from melody_lc.melody import metrics
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model
from melody_lc.midi.maker import PhraseMaker
from melody_lc.rules.plan import load_plan


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("--rules", default="rules/sparse_to_busy.rules")
    ap.add_argument("--walks", type=int, default=64, help="streams, each through one turn of the plan")
    ap.add_argument("--temperature", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the live engine's worker
    print(f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}, 1 thread")
    model, _ = load_model(args.model)
    stats = load_fit_stats(args.model, model)
    plan = load_plan(args.rules)
    if not plan.sectioned:
        raise SystemExit(f"{args.rules} has no phrase sections")
    fits = {rs.digest(): fit_for(rs, model, stats, args.data) for rs in plan.rulesets()}
    first = plan.at(0).rules

    def play(fits: dict, enforce: bool) -> list[list[dict]]:
        """Per phrase of the plan, what each walk played there."""
        rows = [[] for _ in range(plan.length)]
        for w in range(args.walks):
            maker = PhraseMaker(
                model,
                first,
                fits.get(first.digest()),
                temperature=args.temperature,
                seed=w,
                enforce=enforce,
                plan=plan,
                fits=fits,
            )
            for k in range(plan.length):
                tokens, info = maker.next(k)
                step = plan.at(k)
                sides = (step.source, step.target) if step.source is not None else (step.section, step.section)
                rows[k].append(
                    {
                        "held": all(info["satisfied"]),
                        "met": [bool(s.rules.satisfied(tokens[None]).all()) for s in sides],
                        "density": float(metrics.notes_per_bar(tokens[None]).mean()),
                        "interventions": info.get("interventions", 0),
                        "redraws": info.get("redraws", 0),
                    }
                )
        return rows

    prior = play({}, enforce=False)  # the walk decoded as the model writes it: no actor, no mask, no redraws
    actor = play(fits, enforce=False)  # through the actors (a morph: between them), no mask, no redraws
    t0 = time.perf_counter()
    rows = play(fits, enforce=True)  # what stream plays: the actors, the mask, the check, redraws
    seconds = time.perf_counter() - t0
    print(f"{args.rules}: {args.walks} walks, one turn of {plan.length} phrases each, temperature {args.temperature:g}")
    print(
        f"{'phrase':<52} {'obeys its rules: prior':>22} {'actor':>6} {'delivered':>9} {'meets before':>12} "
        f"{'meets after':>11} {'notes/bar':>9} {'mask/phrase':>11} {'redrawn':>7}"
    )
    for k, r in enumerate(rows):
        step = plan.at(k)
        before, after = (f"{np.mean([x['met'][i] for x in r]):.0%}" for i in (0, 1))
        if step.source is None:
            before = after = "-"
        held = [np.mean([x["held"] for x in rs[k]]) for rs in (prior, actor, rows)]
        print(
            f"{step.words(plan.length, k):<52} {held[0]:>22.1%} {held[1]:>6.1%} {held[2]:>9.1%} {before:>12} "
            f"{after:>11} {np.mean([x['density'] for x in r]):>9.2f} "
            f"{np.mean([x['interventions'] for x in r]):>11.1f} {np.mean([x['redraws'] > 0 for x in r]):>7.0%}"
        )
    print(
        "meets before/after, notes/bar, mask and redrawn: what is delivered; "
        f"{seconds / (args.walks * plan.length) * 1000:.0f} ms per delivered phrase (decode under the rules, check, redraws)"
    )


if __name__ == "__main__":
    main()
