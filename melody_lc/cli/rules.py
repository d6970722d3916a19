"""``melody-lc rules check FILE`` and ``melody-lc rules kinds``: the rules language."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="check rules files and list the constraint kinds")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    c = rsub.add_parser("check", help="validate a rules file and explain each rule in words")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=cmd_check)
    k = rsub.add_parser("kinds", help="list the constraint kinds, built in and from plugins")
    k.set_defaults(func=cmd_kinds)


def cmd_check(args) -> int:
    from melody_lc.rules.plan import load_plan

    print(load_plan(args.file).explain())
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
