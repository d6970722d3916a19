"""How fast the rules score melodies: every shipped example file on 20,000 real corpus windows.

    python benchmarks/rules_speed.py [--data DIR] [-n 20000]

Prints melodies scored per second (rewards and exact tests of every rule of the file together)
and the share of real windows that satisfy each file, a first look at how hard each rule set is.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from melody_lc.melody.dataset import MelodyDataset
from melody_lc.paths import shipped_dir
from melody_lc.rules.examples import example_rules
from melody_lc.rules.plan import load_plan


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("-n", type=int, default=20_000)
    args = ap.parse_args()
    windows = MelodyDataset(args.data).windows("train")[: args.n]
    rng = np.random.default_rng(0)
    print(f"{len(windows):,} training windows")
    print(f"{'rules file':<28} {'rules':>5} {'melodies/s':>11} {'real windows satisfying all':>28}")
    rulesets = [  # a file of phrase sections: a row per section with rules
        (path.name + (f" ({rs.section_words})" if rs.section_words else ""), rs)
        for path in sorted(shipped_dir("rules").glob("*.rules"))
        for rs in load_plan(path).rulesets()
        if not example_rules(rs)  # like:/unlike: are scored through the model's encoder, not here
    ]
    for name, rules in rulesets:
        cond = rules.sample_conditions(len(windows), rng) if rules.open else None
        t = time.perf_counter()
        rules.rewards(windows, cond)
        sat = rules.satisfied(windows, cond)
        dt = time.perf_counter() - t
        print(f"{name:<28} {len(rules):>5} {len(windows) / dt:>11,.0f} {sat.all(1).mean():>28.2%}")


if __name__ == "__main__":
    main()
