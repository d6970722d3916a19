"""``melody-lc rules check FILE`` and ``melody-lc rules kinds``: the rules language."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="check rules files and list the constraint kinds")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    c = rsub.add_parser(
        "check",
        help="validate a rules file, explain each rule in words, and decode under its rules' constraints",
    )
    c.add_argument("file", metavar="FILE")
    c.add_argument("--model", metavar="DIR", help="the model whose decoder is tried (default: the shipped one)")
    c.add_argument(
        "--static",
        action="store_true",
        help="check the file alone, without the model: contradictions that only decoding shows are not found",
    )
    c.set_defaults(func=cmd_check)
    k = rsub.add_parser("kinds", help="list the constraint kinds, built in and from plugins")
    k.set_defaults(func=cmd_kinds)


def cmd_check(args) -> int:
    """The file's own checks (located errors), its rules in words, then, unless ``--static``, what
    generate would find before fitting: prior melodies decoded under each section's constraints
    (rules that together allow no melody are an error naming them, exit code 2)."""
    from melody_lc.rules.plan import load_plan

    plan = load_plan(args.file)
    print(plan.explain())
    if args.static:
        return 0
    from melody_lc.cli.model import _load
    from melody_lc.constrain import FIT_TEMPERATURE, check_feasible

    model, _ = _load(args)
    for section in plan.sections:
        if section.morph:  # held to the shared rules, which the sections on either side have too
            continue
        checked = check_feasible(section.rules, model)
        where = f"{section.words}: " if plan.sectioned else ""
        print(
            f"{where}{int(checked.ok.sum())} of {len(checked.ok)} prior melodies decoded under the rules' "
            f"constraints (temperature {FIT_TEMPERATURE}) obey every rule"
        )
    return 0


def cmd_kinds(args) -> int:
    from melody_lc.rules.kinds import BUILTIN_KINDS, load_plugins

    plugins, failed = load_plugins()
    for k in BUILTIN_KINDS:
        alias = f" (also: {', '.join(k.aliases)})" if k.aliases else ""
        print(f"{k.name}{alias}: {k.summary}")
    for name, k in sorted(plugins.items()):
        print(f"{name} [plugin {type(k).__module__}]: {k.summary}")
    for where, reason in failed:
        print(f"(plugin failed to load: {where}: {reason})")
    return 0
