"""``melody-lc fit | generate | transform``: rules applied to the melody VAE."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from melody_lc.choices import METHODS, REALISM_STEPS
from melody_lc.cli import checks
from melody_lc.cli.model import OUT_HELP


def register(sub: argparse._SubParsersAction) -> None:
    from melody_lc.cli.audio import output_options

    f = sub.add_parser("fit", help="fit critics and an actor for rules files (zero-shot, cached)")
    f.add_argument("rules", metavar="RULES", nargs="+")
    f.add_argument(
        "--out",
        metavar="DIR",
        type=checks.out_folder,
        help="keep the fits in DIR (with an index.json) instead of the user cache; "
        "the shipped fits in models/fits were made this way",
    )
    _common(f)
    f.add_argument(
        "--rounds",
        type=checks.positive_int,
        help="fitting rounds (default: FitConfig.rounds in melody_lc/engine/fit.py)",
    )
    f.add_argument(
        "--quick",
        action="store_true",
        help="a sketch fit: a fifth of the samples and steps, about a minute; less reliable",
    )
    f.set_defaults(func=cmd_fit)

    s = sub.add_parser(
        "fit-stats",
        help="store beside a model what fitting takes from its training data (so that new rules files "
        "fit without the dataset) and its realism actor (for `sample`)",
    )
    s.add_argument("--model", metavar="DIR", help="melody VAE checkpoint (default: the shipped one)")
    s.add_argument("--data", metavar="PATH", help="dataset (default: the corpus dataset)")
    s.add_argument("--realism-steps", type=int, help=f"steps of the realism actor's fit (default: {REALISM_STEPS})")
    s.set_defaults(func=cmd_fit_stats)

    g = sub.add_parser("generate", help="write melodies that follow a rules file (fits first if needed)")
    g.add_argument("--rules", required=True, metavar="RULES")
    g.add_argument(
        "--phrase",
        type=int,
        metavar="N",
        help="for a rules file of phrase sections: the rules of its phrase N (1-based)",
    )
    g.add_argument("-n", type=int, default=16)
    g.add_argument(
        "--out",
        metavar="DIR",
        type=checks.out_folder,
        default="generated",
        help=f"the melodies, report.json, report.csv and sheet.png (default generated); {OUT_HELP}",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--temperature",
        type=checks.temperature,
        default=0.5,
        help="decoding temperature (default 0.5, the temperature the actor is fitted at)",
    )
    g.add_argument("--bpm", type=float, default=120.0)
    g.add_argument("--program", type=int, default=0)
    output_options(g)
    g.add_argument(
        "--method",
        choices=METHODS,
        default="actor",
        help="actor (default): prior latents moved by the fitted actor; gd: by gradient search on the "
        "critic; reject: the prior's own latents (rejection sampling)",
    )
    _enforce_option(g)
    g.add_argument(
        "--max-decodes",
        type=int,
        metavar="N",
        help="give up after N decodes (default: 32 per requested melody, at least 64)",
    )
    g.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="value of an open parameter, e.g. --set tonic=G or --set density=5",
    )
    g.add_argument(
        "--rounds",
        type=checks.positive_int,
        help="fitting rounds if the rules have no fit yet (default: FitConfig.rounds in melody_lc/engine/fit.py)",
    )
    g.add_argument(
        "--quick",
        action="store_true",
        help="a sketch fit: a fifth of the samples and steps, about a minute; less reliable",
    )
    _common(g)
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("transform", help="move your melody toward a rules file, keeping its identity")
    t.add_argument("input", metavar="IN.mid")
    t.add_argument("--rules", required=True, metavar="RULES")
    t.add_argument(
        "--phrase",
        type=int,
        metavar="N",
        help="for a rules file of phrase sections: the rules of its phrase N (1-based)",
    )
    t.add_argument("--out", metavar="OUT.mid", type=checks.out_file, required=True)
    t.add_argument("--set", metavar="NAME=VALUE", action="append", default=[])
    t.add_argument("--bpm", type=float, default=120.0)
    t.add_argument("--program", type=int, default=0)
    t.add_argument(
        "--rounds",
        type=checks.positive_int,
        help="fitting rounds if the rules have no fit yet (default: FitConfig.rounds in melody_lc/engine/fit.py)",
    )
    t.add_argument(
        "--quick",
        action="store_true",
        help="a sketch fit: a fifth of the samples and steps, about a minute; less reliable",
    )
    _enforce_option(t)
    _common(t)
    t.set_defaults(func=cmd_transform)


def _enforce_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-enforce",
        dest="enforce",
        action="store_false",
        help="hand over the model's raw output, unchecked and unmasked (for comparison); by default every "
        "melody is decoded under the rules' constraints and checked by their exact tests",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="melody VAE checkpoint (default: the shipped one)")
    p.add_argument("--data", metavar="PATH", help="dataset for the encoder statistics (default: the corpus dataset)")
    p.add_argument("--quiet", action="store_true")


def _parse_values(rules, items: list[str]) -> dict | None:
    from melody_lc.cli import CLIError
    from melody_lc.melody.pitches import parse_open_value

    values = {}
    for item in items:
        if "=" not in item:
            raise CLIError(f"--set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        if name not in rules.open:
            opened = ", ".join(rules.open) or "none"
            raise CLIError(f"{name!r} is not an open parameter of {rules.path} (open: {opened})")
        try:
            values[name] = parse_open_value(name, rules.open[name], value)
        except ValueError as e:
            raise CLIError(f"--set {e}") from None
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
        config = replace(
            config,
            rounds=4,
            conditional_rounds=4,
            slow_rounds=4,
            slow_patience=2,
            conditional_scale=1,
            initial_samples=1024,
            initial_critic_steps=200,
            samples_per_round=256,
            critic_steps=100,
            actor_steps=100,
            stages=1,
        )
    if args.rounds is None:
        return config
    return replace(config, rounds=args.rounds, conditional_rounds=args.rounds, slow_rounds=args.rounds)


def fit_data(args, model):
    """What a fit takes from the data, as ``fit_rules`` wants it: a function called only when a fit is
    needed, returning the statistics shipped beside the model, or (with --data, or none there) the
    dataset's training windows."""
    from melody_lc.cli.model import _dataset, model_dir
    from melody_lc.constrain import load_fit_stats

    def windows():
        stats = None if args.data else load_fit_stats(model_dir(args), model)
        return stats if stats is not None else _dataset(args.data).windows("train")

    return windows


def _prepare(args, rules_path: str | None = None, model=None, store=None, rules=None, fit: bool = True):
    """(rules, model, fitted): loads everything, fitting if no cache has a fit yet (``rules``, a
    RuleSet, instead of the file: one section of a plan); without ``fit``, fitted is None."""
    from melody_lc.cli.model import _load
    from melody_lc.constrain import fit_rounds, fit_rules, shipped_fits_dir
    from melody_lc.paths import cache_dir
    from melody_lc.rules import load_rules

    if rules is None:
        rules = load_rules(rules_path or args.rules, getattr(args, "phrase", None))
    if model is None:
        model, _ = _load(args)
    if not fit:
        return rules, model, None
    windows = fit_data(args, model)

    bars = []  # made at the first round: a fit found in a cache shows no bar
    stages = []  # the stages seen so far
    section = getattr(rules, "section_words", "")

    def progress(e):
        if args.quiet:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(
                tqdm(
                    total=fit_rounds(rules, fit_config(args)),
                    unit="round",
                    desc="fit" + (f" {section}" if section else ""),
                    dynamic_ncols=True,
                    leave=False,
                )
            )
        if e["stage"] >= len(stages):  # a further stage: as many rounds again
            stages.append(e["stage"])
            if e["stage"]:
                bars[0].total += fit_rounds(rules, fit_config(args))
                bars[0].set_description(f"fit{f' {section}' if section else ''} (stage {e['stage'] + 1})")
        bars[0].update(1)
        bars[0].set_postfix(actor_sat=f"{e['actor_satisfaction']:.2f}", prior_sat=f"{e['prior_satisfaction']:.2f}")

    try:
        config = fit_config(args)
        fitted = fit_rules(
            rules,
            model,
            windows,
            config,
            cache_dir=store or cache_dir() / "fits",
            progress=progress,
            search=(shipped_fits_dir(),),
        )
    finally:
        for bar in bars:
            bar.close()
    return rules, model, fitted


def cmd_fit_stats(args) -> int:
    from melody_lc.cli import CLIError
    from melody_lc.cli.model import _dataset, _load, model_dir
    from melody_lc.constrain import FIT_STATS, load_fit_stats, save_fit_stats
    from melody_lc.constrain.realism import REALISM, fit_model_realism

    steps = REALISM_STEPS if args.realism_steps is None else args.realism_steps
    if steps < 1:
        raise CLIError(f"--realism-steps must be at least 1, got {steps}")
    model, _ = _load(args)
    d = model_dir(args)
    if args.data or load_fit_stats(d, model) is None:
        data = _dataset(args.data)
        save_fit_stats(d, model, data.windows("train"), data.path.name)
        print(f"wrote {d / FIT_STATS}.safetensors: fits of new rules for this model need no dataset now")
    last = fit_model_realism(d, model, steps=steps)
    print(
        f"wrote {d / REALISM}.safetensors: `sample` moves prior latents toward where real tunes encode "
        f"(mean move {last['shift']:.1f})"
    )
    return 0


def cmd_fit(args) -> int:
    from melody_lc.cli.model import _load
    from melody_lc.constrain import FIT_TEMPERATURE, fit_key
    from melody_lc.fileio import write_json
    from melody_lc.rules.plan import load_plan

    plans = [load_plan(path) for path in args.rules]  # every file checked before any fitting starts
    model, _ = _load(args)
    index = {}
    for path, plan in zip(args.rules, plans):
        for rs in plan.rulesets():  # a file of phrase sections: each section with rules of its own
            rules, model, fitted = _prepare(args, path, model, Path(args.out) if args.out else None, rules=rs)
            m = fitted.meta
            name = f"{path} ({rs.section_words})" if plan.sectioned else path
            print(
                f"fitted {name}: actor satisfies all rules in {m['satisfaction']:.1%} of fresh samples "
                f"({m.get('stages', 1)} stage(s), best round {m['best_round']} of the last, "
                f"{m['seconds']} s when fitted)"
            )
            config = fit_config(args)
            key = Path(path).name + (f"#{rs.section_words}" if plan.sectioned else "")
            index[key] = {
                "fit": f"fit-{fit_key(rules, model, config, FIT_TEMPERATURE)}",
                "satisfaction": m["satisfaction"],
                "seconds": m["seconds"],
                "best_round": m["best_round"],
                "stages": m.get("stages", 1),
            }
    if args.out:
        old = Path(args.out) / "index.json"
        merged = json.loads(old.read_text()) if old.exists() else {}
        write_json(old, {**merged, **index})
    return 0


def _report_table(report: dict) -> str:
    enforced = report.get("enforced", False)
    lines = [
        f"{'rule':<14} {'satisfied':>9} {'mean reward':>11}"
        + (f" {'mask/melody':>11} {'redrawn':>7}" if enforced else "")
    ]
    for name, r in report["rules"].items():
        lines.append(
            f"{name:<14} {r['satisfied']:>9.1%} {r['mean_reward']:>11.3f}"
            + (f" {r['interventions']:>11.2f} {r['redrawn']:>7}" if enforced else "")
        )
    lines.append(
        f"{'all rules':<14} {report['all_rules']:>9.1%} {report['mean_reward']:>11.3f}   "
        f"mean latent shift {report['mean_latent_shift']:.2f}, spread {report.get('spread', 1.0):.2f}"
    )
    if enforced:
        lines.append(
            f"{report['melodies']} of {report['requested']} delivered from {report['decodes']} decodes; "
            f"the mask overruled the decoder {report['interventions_per_melody']:.2f} times per melody "
            f"(removed probability mass {report['mass_removed_per_melody']:.2f})"
        )
    return "\n".join(lines)


def shortfall(report: dict) -> str | None:
    """What enforcement could not find, in one sentence, or None when everything was delivered."""
    if not report.get("missing"):
        return None
    failing = sorted(((r["redrawn"], name) for name, r in report["rules"].items() if r["redrawn"]), reverse=True)
    why = ", ".join(f"{name} failed {k} time{'s' if k != 1 else ''}" for k, name in failing) or "no rule failed"
    dead = report.get("blocked_by") or {}
    if dead:
        why += "; dead ends (rules allowing nothing together): " + ", ".join(f"{b} {k}x" for b, k in dead.items())
    return (
        f"only {report['melodies']} of {report['requested']} melodies obey every rule after {report['decodes']} "
        f"decodes ({why}); raise --max-decodes, or loosen the rules"
    )


def cmd_generate(args) -> int:
    from melody_lc.cli import CLIError
    from melody_lc.cli.model import _check_midi_options, _write_all, clear_earlier_run
    from melody_lc.constrain import generate, report_conditions
    from melody_lc.fileio import atomic_path, write_json
    from melody_lc.melody.render import pianoroll_sheet
    from melody_lc.rules import load_rules
    from melody_lc.rules.examples import closeness_lines
    from melody_lc.rules.form import chord_halves

    _check_midi_options(args)
    if args.n < 1:
        raise CLIError(f"-n must be at least 1, got {args.n}")
    if args.max_decodes is not None and args.max_decodes < 1:
        raise CLIError(f"--max-decodes must be at least 1, got {args.max_decodes}")
    if args.method == "reject" and (args.rounds is not None or args.quick):
        option = "--rounds" if args.rounds is not None else "--quick"
        raise CLIError(f"{option} sets how rules are fitted; --method reject draws from the prior and fits nothing")
    values = _parse_values(load_rules(args.rules, args.phrase), args.set)
    rules, model, fitted = _prepare(args, fit=args.method != "reject")  # rejection sampling needs no actor
    tokens, report = generate(
        rules,
        model,
        args.n,
        fitted,
        method=args.method,
        seed=args.seed,
        temperature=args.temperature,
        values=values,
        enforce=args.enforce,
        max_decodes=args.max_decodes,
    )
    out = Path(args.out)
    if len(tokens):
        _write_all(tokens, "melody", args, chord_halves(rules))
    else:  # none delivered: nothing of an earlier run may look like this run's
        clear_earlier_run(out, "melody", 0)
        (out / "sheet.png").unlink(missing_ok=True)
    write_json(out / "report.json", report)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rule", "satisfied", "mean_reward", "interventions_per_melody", "redrawn"])
    for name, r in report["rules"].items():
        w.writerow(
            [
                name,
                f"{r['satisfied']:.4f}",
                f"{r['mean_reward']:.4f}",
                f"{r.get('interventions', 0):.4f}",
                r.get("redrawn", 0),
            ]
        )
    with atomic_path(out / "report.csv") as tmp:
        tmp.write_text(buf.getvalue())
    if len(tokens):
        pianoroll_sheet(tokens, out / "sheet.png", marks=rules.violations(tokens, report_conditions(report)))
    print(_report_table(report))
    for line in closeness_lines(report):  # like:/unlike: how near the examples the melodies came
        print(line)
    if not args.enforce and report["all_rules"] < 1:
        broken = round((1 - report["all_rules"]) * report["melodies"])
        print(
            f"note: --no-enforce: {broken} of {report['melodies']} melodies break a rule (marked red in "
            f"{out / 'sheet.png'})",
            file=sys.stderr,
        )
    missing = shortfall(report)
    if missing:
        print(f"melody-lc: {missing}", file=sys.stderr)
        return 1
    return 0


def cmd_transform(args) -> int:
    from melody_lc.cli.model import _check_midi_options, read_user_melody
    from melody_lc.constrain import transform
    from melody_lc.melody import Melody
    from melody_lc.rules import load_rules

    _check_midi_options(args)
    rules = load_rules(args.rules, args.phrase)
    values = _parse_values(rules, args.set)
    if rules.open and values is None:
        from melody_lc.cli import CLIError

        raise CLIError(f"{args.rules} has open parameters ({', '.join(rules.open)}): give them with --set")
    melody, note = read_user_melody(args.input)
    if note:
        print(f"note: {note}", file=sys.stderr)
    rules, model, fitted = _prepare(args)
    out_tokens, report = transform(melody.tokens, rules, model, fitted, values=values, enforce=args.enforce)
    obeys = bool(report["all_rules"])
    if not obeys and args.enforce:
        from melody_lc.cli import CLIError

        broken = [name for name, r in report["rules"].items() if not r["satisfied"]]
        raise CLIError(
            f"found no melody near {args.input} that obeys every rule of {args.rules} "
            f"(still broken: {', '.join(broken)}); nothing written"
        )
    from melody_lc.rules.form import chord_halves

    Melody(out_tokens[0]).to_midi_file(args.out, qpm=args.bpm, program=args.program, chords=chord_halves(rules))
    for name, r in report["rules"].items():
        before = report["before"][name]["satisfied"]
        print(f"{name:<14} {'holds' if before else 'broken':>7} -> {'holds' if r['satisfied'] else 'broken'}")
    if report["unchanged_because_obeyed"][0]:
        print(f"wrote {args.out}: the melody already obeys every rule, so it is unchanged")
    else:
        print(
            f"wrote {args.out}: {report['notes_kept'][0]:.0%} of its notes kept (onset and pitch), "
            f"latent shift {report['mean_latent_shift']:.2f}"
        )
        for line in describe_changes(report["changed"][0]):
            print(line)
    if not obeys:
        print("note: --no-enforce: the result breaks a rule", file=sys.stderr)
    print(json.dumps({k: report[k] for k in ("all_rules", "mean_reward", "steps_changed", "interventions_per_melody")}))
    return 0


def describe_changes(changes: list[dict], most: int = 32) -> list[str]:
    """A transformation's changes note by note: 'bar 3 beat 2.5: F#4 -> G4' (or 'added' / 'removed')."""
    from melody_lc.melody.pitches import pitch_name

    lines = [f"changed {len(changes)} note{'s' if len(changes) != 1 else ''}:" if changes else "no note changed"]
    for c in changes[:most]:
        where = f"  bar {c['bar']} beat {c['beat']:g}: "
        if c["before"] is None:
            lines.append(where + f"{pitch_name(c['after'])} added")
        elif c["after"] is None:
            lines.append(where + f"{pitch_name(c['before'])} removed")
        else:
            lines.append(where + f"{pitch_name(c['before'])} -> {pitch_name(c['after'])}")
    if len(changes) > most:
        lines.append(f"  ... and {len(changes) - most} more")
    return lines
