"""``melody-lc fit | generate | transform``: rules applied to the melody VAE."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("fit", help="fit critics and an actor for a rules file (zero-shot, cached)")
    f.add_argument("rules", metavar="RULES")
    _common(f)
    f.add_argument("--rounds", type=int, default=12)
    f.set_defaults(func=cmd_fit)

    g = sub.add_parser("generate", help="write melodies that follow a rules file (fits first if needed)")
    g.add_argument("--rules", required=True, metavar="RULES")
    g.add_argument("-n", type=int, default=16)
    g.add_argument("--out", metavar="DIR", default="generated")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--bpm", type=float, default=120.0)
    g.add_argument("--program", type=int, default=0)
    g.add_argument("--method", choices=["actor", "gd", "reject"], default="actor")
    g.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                   help="value of an open parameter, e.g. --set tonic=G or --set density=5")
    g.add_argument("--rounds", type=int, default=12)
    _common(g)
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("transform", help="move your melody toward a rules file, keeping its identity")
    t.add_argument("input", metavar="IN.mid")
    t.add_argument("--rules", required=True, metavar="RULES")
    t.add_argument("--out", metavar="OUT.mid", required=True)
    t.add_argument("--set", metavar="NAME=VALUE", action="append", default=[])
    t.add_argument("--bpm", type=float, default=120.0)
    t.add_argument("--program", type=int, default=0)
    t.add_argument("--rounds", type=int, default=12)
    _common(t)
    t.set_defaults(func=cmd_transform)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="melody VAE checkpoint (default: the shipped one)")
    p.add_argument("--data", metavar="PATH", help="dataset for the encoder statistics (default: the corpus dataset)")
    p.add_argument("--quiet", action="store_true")


def _parse_values(rules, items: list[str]) -> dict | None:
    from melody_lc.cli import CLIError
    from melody_lc.rules.kinds import PITCH_CLASSES

    values = {}
    for item in items:
        if "=" not in item:
            raise CLIError(f"--set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        if name not in rules.open:
            opened = ", ".join(rules.open) or "none"
            raise CLIError(f"{name!r} is not an open parameter of {rules.path} (open: {opened})")
        if name == "tonic":
            pc = PITCH_CLASSES.get(value.lower())
            if pc is None:
                raise CLIError(f"--set tonic: expected a pitch class such as C, F# or Bb, got {value!r}")
            values[name] = pc
        else:
            try:
                values[name] = float(value)
            except ValueError:
                raise CLIError(f"--set {name}: expected a number, got {value!r}") from None
    missing = set(rules.open) - set(values)
    if values and missing:
        raise CLIError(f"give all open parameters or none; missing: {', '.join(sorted(missing))}")
    return values or None


def _prepare(args):
    """(rules, model, fitted): loads everything, fitting if the cache has no fit yet."""
    from melody_lc.cli.model import _dataset, _load
    from melody_lc.constrain import fit_rules
    from melody_lc.engine import FitConfig
    from melody_lc.paths import cache_dir
    from melody_lc.rules import load_rules

    rules = load_rules(args.rules)
    model, _ = _load(args)
    windows = _dataset(args.data).windows("train")
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=args.rounds, unit="round", desc="fit", dynamic_ncols=True, leave=False)

    def progress(e):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(actor_sat=f"{e['actor_satisfaction']:.2f}", prior_sat=f"{e['prior_satisfaction']:.2f}")

    try:
        fitted = fit_rules(rules, model, windows, FitConfig(rounds=args.rounds), cache_dir=cache_dir() / "fits",
                           progress=progress)
    finally:
        if bar is not None:
            bar.close()
    return rules, model, fitted


def cmd_fit(args) -> int:
    rules, model, fitted = _prepare(args)
    m = fitted.meta
    print(f"fitted {args.rules}: actor satisfies all rules in {m['satisfaction']:.1%} of fresh samples "
          f"(best round {m['best_round']}, {m['seconds']} s)")
    return 0


def _report_table(report: dict) -> str:
    lines = [f"{'rule':<14} {'satisfied':>9} {'mean reward':>11}"]
    for name, r in report["rules"].items():
        lines.append(f"{name:<14} {r['satisfied']:>9.1%} {r['mean_reward']:>11.3f}")
    lines.append(f"{'all rules':<14} {report['all_rules']:>9.1%} {report['mean_reward']:>11.3f}   "
                 f"mean latent shift {report['mean_latent_shift']:.2f}")
    return "\n".join(lines)


def cmd_generate(args) -> int:
    from melody_lc.cli import CLIError
    from melody_lc.cli.model import _check_midi_options, _write_all
    from melody_lc.constrain import generate
    from melody_lc.fileio import atomic_path, write_json
    from melody_lc.melody.render import pianoroll_sheet
    from melody_lc.rules import load_rules

    _check_midi_options(args)
    if args.n < 1:
        raise CLIError(f"-n must be at least 1, got {args.n}")
    values = _parse_values(load_rules(args.rules), args.set)
    rules, model, fitted = _prepare(args)
    tokens, report = generate(rules, model, args.n, fitted, method=args.method, seed=args.seed,
                              temperature=args.temperature, values=values)
    out = Path(args.out)
    _write_all(tokens, "melody", args)
    write_json(out / "report.json", report)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rule", "satisfied", "mean_reward"])
    for name, r in report["rules"].items():
        w.writerow([name, f"{r['satisfied']:.4f}", f"{r['mean_reward']:.4f}"])
    with atomic_path(out / "report.csv") as tmp:
        tmp.write_text(buf.getvalue())
    pianoroll_sheet(tokens, out / "sheet.png")
    print(_report_table(report))
    return 0


def cmd_transform(args) -> int:
    from melody_lc.cli.model import _check_midi_options, read_user_melody
    from melody_lc.constrain import transform
    from melody_lc.melody import Melody
    from melody_lc.rules import load_rules

    _check_midi_options(args)
    values = _parse_values(load_rules(args.rules), args.set)
    rules = load_rules(args.rules)
    if rules.open and values is None:
        from melody_lc.cli import CLIError

        raise CLIError(f"{args.rules} has open parameters ({', '.join(rules.open)}): give them with --set")
    melody, note = read_user_melody(args.input)
    if note:
        print(f"note: {note}", file=sys.stderr)
    rules, model, fitted = _prepare(args)
    out_tokens, report = transform(melody.tokens, rules, model, fitted, values=values)
    Melody(out_tokens[0]).to_midi_file(args.out, qpm=args.bpm, program=args.program)
    for name, r in report["rules"].items():
        before = report["before"][name]["satisfied"]
        print(f"{name:<14} {'holds' if before else 'broken':>7} -> {'holds' if r['satisfied'] else 'broken'}")
    print(f"wrote {args.out}: {report['steps_changed']:.0%} of steps changed, latent shift {report['mean_latent_shift']:.2f}")
    print(json.dumps({k: report[k] for k in ("all_rules", "mean_reward", "steps_changed")}))
    return 0
