"""The three piano-roll sheets of docs/figures.md of one rules file: prior samples, the actor's raw output, and
what melody-lc hands over; notes that break a rule in red, melodies that break any framed in red.

    python docs/make_enforce_sheets.py [--rules rules/dorian_folk.rules] [-n 8] [--out docs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from melody_lc.constrain import (
    FIT_TEMPERATURE,
    fit_rules,
    generate,
    load_fit_stats,
    report_conditions,
    shipped_fits_dir,
)
from melody_lc.melody.render import pianoroll_sheet
from melody_lc.melody.train import load_model
from melody_lc.paths import cache_dir
from melody_lc.rules import load_rules


def main() -> None:
    from melody_lc.cli.model import default_model_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", default="rules/dorian_folk.rules")
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    model, _ = load_model(args.model)
    rules = load_rules(args.rules)
    fitted = fit_rules(
        rules, model, load_fit_stats(args.model, model), cache_dir=cache_dir() / "fits", search=(shipped_fits_dir(),)
    )
    name = Path(args.rules).stem
    for row, method, enforce in (("prior", "reject", False), ("actor", "actor", False), ("delivered", "actor", True)):
        tokens, report = generate(
            rules, model, args.n, fitted, method=method, seed=4, temperature=FIT_TEMPERATURE, enforce=enforce
        )
        path = Path(args.out) / f"{name}-{row}.png"
        pianoroll_sheet(tokens, path, columns=2, marks=rules.violations(tokens, report_conditions(report)))
        print(
            f"{path}: {report['all_rules']:.0%} obey every rule"
            + (
                f", the mask overruled the decoder {report['interventions_per_melody']:.2f} times per melody"
                if enforce
                else ""
            )
        )


if __name__ == "__main__":
    main()
