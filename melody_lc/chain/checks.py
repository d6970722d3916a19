"""What a chain file names, checked before anything runs: rules files and their open parameters,
.mid loops, and where recordings go."""

from __future__ import annotations

import os
from pathlib import Path

from melody_lc.chain.constrain import Constrain
from melody_lc.chain.registry import FileLoop, SynthSink
from melody_lc.chain.sources import read_loop
from melody_lc.chain.spec import ChainError, ChainFile, Link


def open_values(cf: ChainFile, link: Link, rules) -> dict | None:
    """The values a chain file gives the open parameters of ``link``'s rules (``tonic=G``,
    ``density=4``), checked against them; None when it gives none (a generator then draws them once;
    the constraint transform needs them all)."""
    from melody_lc.melody.pitches import parse_open_value

    def fail(arg, message, column=None):
        raise ChainError(
            str(cf.path), arg.line if arg else link.line, column or (arg.column if arg else link.column), message
        )

    values = {}
    for name, arg in link.open_args.items():
        spec = rules.open.get(name)
        if spec is None:
            opened = ", ".join(rules.open) or "none"
            fail(
                arg,
                f"{link.name} has no parameter '{name}', and it is not an open parameter of "
                f"{Path(link.values['rules']).name} (open: {opened})",
                arg.name_column,
            )
        try:
            values[name] = parse_open_value(name, spec, arg.text)
        except ValueError as e:
            fail(arg, str(e))
    missing = sorted(set(rules.open) - set(values))
    if missing and (values or link.cls is Constrain):
        fail(
            None,
            f"{link.name} needs a value for every open parameter of {Path(link.values['rules']).name}; "
            f"missing: {', '.join(missing)} (e.g. {missing[0]}=...)",
        )
    return values or None


def check_files(cf: ChainFile) -> dict[str, tuple]:
    """Read every rules file and .mid loop a chain file names, so that a bad one is reported before
    anything runs; returns the loops read (path -> :func:`read_loop`)."""
    from melody_lc.rules.plan import load_plan

    loops = {}
    for spec in cf.chains:
        for link in spec.links:
            if link.values.get("rules") and link.kind != "sink":
                if not Path(link.values["rules"]).is_file():
                    raise ChainError(
                        str(cf.path), link.line, link.column, f"no such rules file: {link.values['rules']}"
                    )
                rules = load_plan(link.values["rules"])  # a RulesError names its own file and line
                if rules.sectioned and link.kind != "source":
                    raise ChainError(
                        str(cf.path),
                        link.line,
                        link.column,
                        f"{link.name} takes the rules of one phrase: {link.values['rules']} changes them from "
                        "phrase to phrase (a generator plays such a file)",
                    )
                link.open_values = open_values(cf, link, rules)
            record = link.cls.recording(link) if link.kind == "sink" else None
            if record:
                folder = Path(record).parent
                while not folder.exists() and folder != folder.parent:
                    folder = folder.parent
                if not os.access(folder, os.W_OK):
                    raise ChainError(
                        str(cf.path),
                        link.line,
                        link.column,
                        f"cannot write the recording {record}: {folder} is not writable",
                    )
            if link.cls is SynthSink:
                from melody_lc.audio.soundfonts import AudioError, find_soundfont

                try:
                    find_soundfont(link.values["soundfont"] or None)
                except AudioError as e:
                    raise ChainError(str(cf.path), link.line, link.column, str(e)) from None
            if link.cls is FileLoop:
                try:
                    loops[link.values["path"]] = read_loop(link.values["path"])
                except (OSError, ValueError, EOFError, KeyError, IndexError) as e:
                    why = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
                    raise ChainError(
                        str(cf.path), link.line, link.column, f"cannot read {link.values['path']} as a MIDI file: {why}"
                    ) from None
    return loops
