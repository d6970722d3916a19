"""``melody-lc fit | generate | transform``: rules applied to the melody VAE."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("fit", help="fit critics and an actor for rules files (zero-shot, cached)")
    f.add_argument("rules", metavar="RULES", nargs="+")
    f.add_argument("--out", metavar="DIR", help="keep the fits in DIR (with an index.json) instead of the user cache; "
                   "the shipped fits in models/fits were made this way")
    _common(f)
    f.add_argument("--rounds", type=int, help="fitting rounds (default: the engine's, 16)")
    f.add_argument("--quick", action="store_true", help="a sketch fit: a fifth of the samples and steps, "
                   "about a minute; less reliable")
    f.set_defaults(func=cmd_fit)

    g = sub.add_parser("generate", help="write melodies that follow a rules file (fits first if needed)")
    g.add_argument("--rules", required=True, metavar="RULES")
    g.add_argument("-n", type=int, default=16)
    g.add_argument("--out", metavar="DIR", default="generated")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--temperature", type=float, default=0.5,
                   help="decoding temperature (default 0.5, the temperature the actor is fitted at)")
    g.add_argument("--bpm", type=float, default=120.0)
    g.add_argument("--program", type=int, default=0)
    g.add_argument("--method", choices=["actor", "gd", "reject"], default="actor")
    g.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                   help="value of an open parameter, e.g. --set tonic=G or --set density=5")
    g.add_argument("--rounds", type=int, help="fitting rounds if the rules have no fit yet (default 16)")
    g.add_argument("--quick", action="store_true", help="a sketch fit: a fifth of the samples and steps, "
                   "about a minute; less reliable")
    _common(g)
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("transform", help="move your melody toward a rules file, keeping its identity")
    t.add_argument("input", metavar="IN.mid")
    t.add_argument("--rules", required=True, metavar="RULES")
    t.add_argument("--out", metavar="OUT.mid", required=True)
    t.add_argument("--set", metavar="NAME=VALUE", action="append", default=[])
    t.add_argument("--bpm", type=float, default=120.0)
    t.add_argument("--program", type=int, default=0)
    t.add_argument("--rounds", type=int, help="fitting rounds if the rules have no fit yet (default 16)")
    t.add_argument("--quick", action="store_true", help="a sketch fit: a fifth of the samples and steps, "
                   "about a minute; less reliable")
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


def fit_config(args):
    """The FitConfig of --rounds and --quick."""
    from dataclasses import replace

    from melody_lc.engine import FitConfig

    config = FitConfig()
    if args.quick:
        config = replace(config, rounds=4, initial_samples=1024, initial_critic_steps=200, samples_per_round=256,
                         critic_steps=100, actor_steps=100)
    return config if args.rounds is None else replace(config, rounds=args.rounds)


def _prepare(args, rules_path: str | None = None, model=None, store=None):
    """(rules, model, fitted): loads everything, fitting if no cache has a fit yet."""
    from melody_lc.cli.model import _dataset, _load
    from melody_lc.constrain import fit_rules, shipped_fits_dir
    from melody_lc.paths import cache_dir
    from melody_lc.rules import load_rules

    rules = load_rules(rules_path or args.rules)
    if model is None:
        model, _ = _load(args)

    def windows():  # only when there is no fit yet
        return _dataset(args.data).windows("train")

    bars = []  # made at the first round: a fit found in a cache shows no bar

    def progress(e):
        if args.quiet:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=fit_config(args).rounds, unit="round", desc="fit", dynamic_ncols=True, leave=False))
        bars[0].update(1)
        bars[0].set_postfix(actor_sat=f"{e['actor_satisfaction']:.2f}", prior_sat=f"{e['prior_satisfaction']:.2f}")

    try:
        config = fit_config(args)
        fitted = fit_rules(rules, model, windows, config, cache_dir=store or cache_dir() / "fits",
                           progress=progress, search=(shipped_fits_dir(),))
    finally:
        for bar in bars:
            bar.close()
    return rules, model, fitted


def cmd_fit(args) -> int:
    from melody_lc.cli.model import _load
    from melody_lc.constrain import FIT_TEMPERATURE, fit_key
    from melody_lc.fileio import write_json
    from melody_lc.rules import load_rules

    for path in args.rules:  # every file checked before any fitting starts
        load_rules(path)
    model, _ = _load(args)
    index = {}
    for path in args.rules:
        rules, model, fitted = _prepare(args, path, model, Path(args.out) if args.out else None)
        m = fitted.meta
        print(f"fitted {path}: actor satisfies all rules in {m['satisfaction']:.1%} of fresh samples "
              f"(best round {m['best_round']}, {m['seconds']} s when fitted)")
        config = fit_config(args)
        index[Path(path).name] = {"fit": f"fit-{fit_key(rules, model, config, FIT_TEMPERATURE)}",
                                  "satisfaction": m["satisfaction"], "seconds": m["seconds"], "best_round": m["best_round"]}
    if args.out:
        old = Path(args.out) / "index.json"
        merged = json.loads(old.read_text()) if old.exists() else {}
        write_json(old, {**merged, **index})
    return 0


def _report_table(report: dict) -> str:
    lines = [f"{'rule':<14} {'satisfied':>9} {'mean reward':>11}"]
    for name, r in report["rules"].items():
        lines.append(f"{name:<14} {r['satisfied']:>9.1%} {r['mean_reward']:>11.3f}")
    lines.append(f"{'all rules':<14} {report['all_rules']:>9.1%} {report['mean_reward']:>11.3f}   "
                 f"mean latent shift {report['mean_latent_shift']:.2f}, spread {report.get('spread', 1.0):.2f}")
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
