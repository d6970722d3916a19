"""``melody-lc plugins | chain``: the MIDI processors there are, and running a chain file."""

from __future__ import annotations

import argparse
import json
import sys
import time

from melody_lc.cli import checks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list MIDI processors, built in and from plugins, with their parameters")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(func=cmd_plugins)

    c = sub.add_parser(
        "chain",
        help="run a chain file: sources -> MIDI processors -> outputs",
        description="Run every chain of a chain file together on one tempo until Ctrl-C (or --seconds). "
        "A chain reads `chain NAME: generator(rules=x.rules) -> humanize(timing=8ms) -> out(virtual=melody-lc)`; "
        "`melody-lc plugins` lists the processors. Every sounding note is ended when it stops.",
    )
    c.add_argument("file", metavar="FILE", help="a .chain file, or a rules file with its own chain section")
    c.add_argument("--check", action="store_true", help="check the file and say what would run, then exit")
    c.add_argument("--bpm", type=float, help="tempo (default: the file's `tempo:`, else 120)")
    c.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    c.add_argument(
        "--rounds",
        type=checks.positive_int,
        help="fitting rounds for rules with no fit yet (default: FitConfig.rounds in melody_lc/engine/fit.py)",
    )
    c.add_argument("--quick", action="store_true", help="for rules with no fit yet, a sketch fit (about a minute)")
    c.add_argument("--model", metavar="DIR")
    c.add_argument("--data", metavar="PATH")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_chain)


def describe_params(cls) -> list[dict]:
    from melody_lc.chain.api import format_value

    return [
        {
            "name": p.name,
            "type": p.type,
            "expects": p.expected(),
            "help": p.help,
            "default": None if p.required else format_value(p, p.default_value()),
        }
        for p in cls.params
    ]


def cmd_plugins(args) -> int:
    from melody_lc.chain import API_VERSION, PLUGIN_GROUP
    from melody_lc.chain.registry import registry

    table, failed = registry()
    if args.json:
        print(
            json.dumps(
                {
                    "api_version": API_VERSION,
                    "processors": [
                        {
                            "name": n,
                            "kind": e.cls.kind,
                            "origin": e.origin,
                            "summary": e.cls.summary,
                            "params": describe_params(e.cls),
                        }
                        for n, e in table.items()
                    ],
                    "failed": [{"entry_point": ep, "reason": why} for ep, why in failed],
                },
                indent=1,
            )
        )
        return 0
    print(f"MIDI processors (processor API {API_VERSION}; plugins register in the entry-point group {PLUGIN_GROUP}):")
    for kind in ("source", "transform", "sink"):
        print(f"\n{kind}s:")
        for name, e in table.items():
            if e.cls.kind != kind:
                continue
            print(f"  {name} [{e.origin}]: {e.cls.summary}")
            for p in describe_params(e.cls):
                default = (
                    "required" if p["default"] is None else f"default {p['default']}" if p["default"] else "optional"
                )
                print(f"      {p['name']}: {p['expects']}; {default}" + (f". {p['help']}" if p["help"] else ""))
    for ep, why in failed:
        print(f"\nplugin failed to load: {ep}: {why}")
    return 0


def make_prepare(args, model=None):
    """``prepare(rules_path) -> (rules, model, fitted)`` for a rack: the model of --model (or the
    shipped one) loaded once; a fit found in the caches, or made (--rounds, --quick, --data)."""
    from argparse import Namespace

    from melody_lc.cli.constrain import _prepare
    from melody_lc.cli.live import prepare_plan
    from melody_lc.rules.plan import load_plan

    loaded = [model] if model is not None else []

    def prepare(rules_path):
        opts = Namespace(
            rules=rules_path,
            model=args.model,
            data=args.data,
            quick=args.quick,
            rounds=args.rounds,
            quiet=getattr(args, "quiet", True),
        )
        plan = load_plan(rules_path)
        if plan.sectioned:  # a generator plays the sections in turn
            rules, m, fitted, fits = prepare_plan(opts, plan, loaded[0] if loaded else None)
            loaded[:] = [m]
            return rules, m, fitted, plan, fits
        rules, m, fitted = _prepare(opts, model=loaded[0] if loaded else None)
        loaded[:] = [m]
        return rules, m, fitted

    return prepare


def cmd_chain(args) -> int:
    from melody_lc.chain.checks import check_files
    from melody_lc.chain.host import Rack
    from melody_lc.chain.syntax import load_chains
    from melody_lc.cli import CLIError

    if args.bpm is not None and not 20 <= args.bpm <= 999:
        raise CLIError(f"--bpm must be 20-999, got {args.bpm:g}")
    chains = load_chains(args.file)  # every name and parameter checked before anything runs
    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    bpm = args.bpm or chains.bpm or 120.0
    if args.check:
        check_files(chains)
        for spec in chains.chains:
            print(f"chain {spec.name}: {' -> '.join(link.text() for link in spec.links)}")
        print(f"{args.file}: {len(chains.chains)} chain{'s' if len(chains.chains) > 1 else ''}, OK")
        return 0
    rack = Rack(chains, make_prepare(args), bpm=bpm, log=say)
    try:
        for spec in chains.chains:
            say(f"chain {spec.name}: {' -> '.join(link.text() for link in spec.links)}")
        rack.start()
        say(f"running at {bpm:g} bpm; Ctrl-C stops")
        t0 = time.monotonic()
        while args.seconds is None or time.monotonic() - t0 < args.seconds:
            time.sleep(0.05)
            gen = [s for s in rack.sources.values() if hasattr(s, "engine")]
            if any(s.engine.error for s in gen):
                break
    finally:
        rack.stop()
        time.sleep(0.05)  # let the MIDI system deliver the last messages before the ports close
        rack.close()
    for r in rack.runners:
        for slot in r.slots:
            if slot.failed:
                say(f"chain {r.name}: {slot.link.name} was bypassed: {slot.failed}")
    errors = [s.engine.error for s in rack.sources.values() if hasattr(s, "engine") and s.engine.error]
    if rack.record_errors:
        raise CLIError(rack.record_errors[0])
    if errors:
        raise CLIError(errors[0] + " (stopped; every note was turned off)")
    return 0
