"""What a chain file holds once read: chains of links (a processor and its arguments, as written
and as checked values), and how each is written back (``ChainFile.save``). Reading is
:mod:`melody_lc.chain.syntax`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from melody_lc.chain.api import ParamError, Processor, format_value
from melody_lc.errors import LocatedError
from melody_lc.fileio import atomic_path


class ChainError(LocatedError):
    """An error in a chain file, located at ``path:line:column``."""


@dataclass
class Arg:
    name: str | None  # None: positional
    text: str
    line: int
    column: int  # of the value
    name_column: int = 0  # of the name


@dataclass
class Link:
    """One processor of a chain, as written and, once resolved, with checked values."""

    name: str
    args: list[Arg]
    line: int
    column: int
    cls: type[Processor] | None = None
    values: dict = field(default_factory=dict)  # every parameter's value (defaults included)
    written: dict[str, str] = field(default_factory=dict)  # the parameters given, as text
    bypass: bool = False
    open_args: dict[str, Arg] = field(default_factory=dict)  # the rules' open parameters, as written
    open_values: dict | None = None  # ... and their values, once the rules file is read (check_files)

    @property
    def kind(self) -> str:
        return self.cls.kind if self.cls is not None else "?"

    def text(self) -> str:
        parts = [f"{k}={_quote(v)}" for k, v in self.written.items()] + (["bypass=yes"] if self.bypass else [])
        return f"{self.name}({', '.join(parts)})"

    def set(self, name: str, text: str) -> None:
        """Change a parameter from its text (checked against the declaration; raises ParamError)."""
        param = self.cls.declared().get(name)
        if param is None:
            raise ParamError(f"{self.name} has no parameter '{name}'")
        if '"' in text:
            raise ParamError(f"{name}: a value cannot hold a double quote")
        if param.type == "path":
            raise ParamError(f"{name}: a file is changed in the chain file itself (then restart the chain)")
        value = param.parse(text)
        problem = self.cls.check_values({**self.values, name: value})
        if problem:
            raise ParamError(f"{self.name}: {problem}")
        self.values[name] = value
        self.written[name] = format_value(param, self.values[name]) if param.type not in ("duration", "path") else text


@dataclass
class ChainSpec:
    name: str
    links: list[Link]
    first_line: int  # 1-based lines the chain was written on (inclusive)
    last_line: int
    named: bool = True  # written with a name (an unnamed chain is saved back unnamed)

    @property
    def source(self) -> Link:
        return self.links[0]

    @property
    def transforms(self) -> list[Link]:
        return self.links[1:-1]

    @property
    def sink(self) -> Link:
        return self.links[-1]

    def text(self) -> str:
        head = f"chain {self.name}: " if self.named else "chain: "
        one = head + " -> ".join(link.text() for link in self.links)
        if len(one) <= 100:
            return one
        return head + self.links[0].text() + "".join(f"\n    -> {link.text()}" for link in self.links[1:])


@dataclass
class ChainFile:
    path: Path
    lines: list[str]
    chains: list[ChainSpec]
    bpm: float | None = None
    rules_file: bool = False  # the chain section of a rules file: rules=... defaults to the file itself

    def text(self) -> str:
        """The file with every chain written from its current state, other lines as they were."""
        out, i = [], 0
        for spec in sorted(self.chains, key=lambda c: c.first_line):
            out += self.lines[i : spec.first_line - 1]
            out += spec.text().split("\n")
            i = spec.last_line
        out += self.lines[i:]
        return "\n".join(out) + "\n"

    def save(self) -> None:
        """Write the chains back (atomically), and remember where they now are."""
        text = self.text()
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(text)
        from melody_lc.chain.syntax import parse_chains  # reading a chain file stands on this module

        fresh = parse_chains(text, str(self.path), self.rules_file)
        for spec, new in zip(self.chains, fresh.chains):
            spec.first_line, spec.last_line = new.first_line, new.last_line
        self.lines = fresh.lines


def _quote(text: str) -> str:
    return f'"{text}"' if re.search(r"[\s,()\"]|^#|->", text) else text
