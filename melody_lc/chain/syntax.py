"""The chain file: which sources feed which processors into which outputs.

    # two voices at 100 bpm
    tempo: 100
    chain lead: generator(rules=c_major_busy.rules, seed=1)
        -> humanize(timing=8ms, velocity=10)
        -> out(virtual=melody-lc)
    chain keys: input(port=Keystation) -> scale(key=D, scale=dorian) -> out(port=Synth, channel=2)

A chain file may also be a rules file's own section: ``melody-lc chain x.rules`` reads its chain
lines (the rules language skips them), and there ``generator()`` and ``constrain()`` take that
file's rules unless told otherwise.

A chain is ``chain [NAME]: source -> transform ... -> sink``; it may go on over lines that start
with ``->``. A processor's arguments are ``name=value`` or, in the order the processor declares
its parameters, plain values; ``bypass=yes`` keeps a transform in the chain but off. Values with
spaces or commas go in double quotes. Paths are relative to the chain file. ``#`` starts a comment
at the start of a line or after a space (comments on a chain's own lines are not kept when the
terminal UI saves the chain back; comments on lines of their own are). Errors read ``file:line:column: what was expected``.
:meth:`ChainFile.save` writes the chains back in place, keeping every other line as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

from melody_lc.chain.api import Param, ParamError
from melody_lc.chain.spec import Arg, ChainError, ChainFile, ChainSpec, Link
from melody_lc.rules.syntax import did_you_mean


def _strip_comment(line: str) -> str:
    """``line`` without its comment: ``#`` at the start or after a space, outside double quotes."""
    quoted = False
    for k, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


_CHAIN_HEAD = re.compile(r"^\s*chain\b\s*([A-Za-z_][\w-]*)?\s*:")
_TEMPO = re.compile(r"^\s*tempo\s*:\s*(\S+)\s*(bpm)?\s*$", re.IGNORECASE)


class _Scanner:
    """Characters of one chain statement (over one or more lines) with their line and column."""

    def __init__(self, path: str, pieces: list[tuple[int, int, str]]) -> None:
        self.path = path
        self.chars: list[tuple[str, int, int]] = []
        for line, col0, text in pieces:
            self.chars += [(ch, line, col0 + k) for k, ch in enumerate(text)]
            self.chars.append((" ", line, col0 + len(text)))
        self.i = 0

    def where(self) -> tuple[int, int]:
        if self.i < len(self.chars):
            return self.chars[self.i][1], self.chars[self.i][2]
        return (self.chars[-1][1], self.chars[-1][2]) if self.chars else (1, 1)

    def fail(self, message: str, at: tuple[int, int] | None = None):
        line, col = at or self.where()
        raise ChainError(self.path, line, col, message)

    def skip(self) -> None:
        while self.i < len(self.chars) and self.chars[self.i][0].isspace():
            self.i += 1

    def peek(self, s: str) -> bool:
        self.skip()
        return "".join(c for c, _, _ in self.chars[self.i : self.i + len(s)]) == s

    def take(self, s: str, what: str) -> None:
        if not self.peek(s):
            found = self.chars[self.i][0] if self.i < len(self.chars) else "the end of the chain"
            self.fail(f"expected {what}, found '{found}'" if self.i < len(self.chars) else f"expected {what}")
        self.i += len(s)

    def at_end(self) -> bool:
        self.skip()
        return self.i >= len(self.chars)

    def word(self, what: str) -> tuple[str, int, int]:
        self.skip()
        line, col = self.where()
        j = self.i
        while j < len(self.chars) and (self.chars[j][0].isalnum() or self.chars[j][0] in "_"):
            j += 1
        if j == self.i:
            found = self.chars[self.i][0] if self.i < len(self.chars) else "nothing"
            self.fail(f"expected {what}, found '{found}'")
        text = "".join(c for c, _, _ in self.chars[self.i : j])
        self.i = j
        return text, line, col

    def value(self) -> tuple[str, int, int]:
        self.skip()
        line, col = self.where()
        if self.peek('"'):
            self.i += 1
            j = self.i
            while j < len(self.chars) and self.chars[j][0] != '"':
                j += 1
            if j >= len(self.chars):
                self.fail("this quoted value has no closing '\"'", (line, col))
            text = "".join(c for c, _, _ in self.chars[self.i : j])
            self.i = j + 1
            return text, line, col
        j = self.i
        while (
            j < len(self.chars)
            and self.chars[j][0] not in ",()"
            and not (self.chars[j][0] == "-" and j + 1 < len(self.chars) and self.chars[j + 1][0] == ">")
        ):
            j += 1
        text = "".join(c for c, _, _ in self.chars[self.i : j]).strip()
        if not text:
            self.fail("expected a value")
        self.i = j
        return text, line, col


def _parse_link(sc: _Scanner) -> Link:
    name, line, col = sc.word("a processor name, such as generator, humanize or out")
    args: list[Arg] = []
    if sc.peek("("):
        sc.take("(", "'('")
        if sc.peek(")"):
            sc.take(")", "')'")
            return Link(name, args, line, col)
        while True:
            save = sc.i
            key = None
            sc.skip()
            key_col = sc.where()[1]
            j = sc.i
            while j < len(sc.chars) and (sc.chars[j][0].isalnum() or sc.chars[j][0] == "_"):
                j += 1
            k = j
            while k < len(sc.chars) and sc.chars[k][0] == " ":
                k += 1
            if j > sc.i and k < len(sc.chars) and sc.chars[k][0] == "=":
                key = "".join(c for c, _, _ in sc.chars[sc.i : j])
                sc.i = k + 1
            else:
                sc.i = save
            text, vline, vcol = sc.value()
            args.append(Arg(key, text, vline, vcol, key_col))
            if sc.peek(","):
                sc.take(",", "','")
                continue
            sc.take(")", "',' or ')' after an argument")
            break
    return Link(name, args, line, col)


def parse_chains(text: str, path: str = "<chain>", rules_file: bool = False) -> ChainFile:
    """The chains of ``text`` as written (names and arguments not checked yet: see :func:`resolve`).
    In a rules file (``rules_file``) the chains are its own section: the rule lines are skipped."""
    lines = text.splitlines()
    chains: list[ChainSpec] = []
    bpm = None
    i = 0
    while i < len(lines):
        raw = _strip_comment(lines[i])
        if not raw.strip():
            i += 1
            continue
        m = _CHAIN_HEAD.match(raw)
        t = _TEMPO.match(raw)
        if t:
            try:
                bpm = float(t.group(1))
            except ValueError:
                bpm = -1.0
            if not 20 <= bpm <= 999:
                raise ChainError(path, i + 1, t.start(1) + 1, f"expected a tempo of 20-999 bpm, found '{t.group(1)}'")
            i += 1
            continue
        if not m and rules_file and not raw.strip().startswith("->"):
            i += 1  # a rule: the rules language reads it
            continue
        if not m:
            col = len(raw) - len(raw.lstrip()) + 1
            words = raw.strip().split(":")[0].split() or [raw.strip()[:1]]
            if words[0] == "chain":
                raise ChainError(
                    path, i + 1, col, "expected 'chain NAME:' (a name of letters, digits, _ or -, then ':')"
                )
            hint = (
                " (a chain goes on over lines that start with '->', right after it)"
                if raw.strip().startswith("->")
                else did_you_mean(words[0], ["chain", "tempo"])
            )
            raise ChainError(
                path,
                i + 1,
                col,
                f"expected 'chain NAME: source -> ... -> out(...)' or 'tempo: BPM', found '{words[0]}'{hint}",
            )
        pieces = [(i + 1, m.end() + 1, raw[m.end() :])]
        first = i
        while True:  # lines that go on with '->' (comment lines and blank lines between are skipped)
            j = i + 1
            while j < len(lines) and not _strip_comment(lines[j]).strip():
                j += 1
            if j >= len(lines) or not _strip_comment(lines[j]).strip().startswith("->"):
                break
            i = j
            pieces.append((i + 1, 1, _strip_comment(lines[i])))
        sc = _Scanner(path, pieces)
        links = [_parse_link(sc)]
        while not sc.at_end():
            sc.take("->", "'->' between processors")
            links.append(_parse_link(sc))
        name = m.group(1) or ""
        chains.append(ChainSpec(name, links, first + 1, i + 1, named=bool(name)))
        i += 1
    if not chains:
        raise ChainError(path, max(1, len(lines)), 1, "expected at least one 'chain: source -> ... -> out(...)' line")
    return ChainFile(Path(path), lines, chains, bpm, rules_file)


def resolve(cf: ChainFile, table: dict, failed: list[tuple[str, str]] = ()) -> ChainFile:
    """Check every chain against the processors in ``table`` (name -> registry Entry): names, the
    order source -> transforms -> sink, and every parameter against its declaration. Paths become
    relative to the chain file. Nothing runs before this passes."""
    path = str(cf.path)
    names: dict[str, int] = {}
    for n, spec in enumerate(cf.chains):
        if not spec.name:
            spec.name = f"chain{n + 1}" if len(cf.chains) > 1 else "main"
        elif spec.name in names:
            raise ChainError(
                path, spec.first_line, 1, f"a chain named '{spec.name}' is already on line {names[spec.name]}"
            )
        names[spec.name] = spec.first_line
        for k, link in enumerate(spec.links):
            entry = table.get(link.name)
            broken = [why for ep, why in failed if ep.split(" = ")[0] == link.name]
            if entry is None and broken:
                raise ChainError(path, link.line, link.column, f"the plugin '{link.name}' failed to load: {broken[0]}")
            if entry is None:
                raise ChainError(
                    path,
                    link.line,
                    link.column,
                    f"no processor named '{link.name}' "
                    f"(`melody-lc plugins` lists them){did_you_mean(link.name, table)}",
                )
            link.cls = entry.cls
            want = "source" if k == 0 else "sink" if k == len(spec.links) - 1 else "transform"
            if link.cls.kind != want:
                where = {
                    "source": "the first link",
                    "sink": "the last link",
                    "transform": "a link between the source and the sink",
                }[want]
                which = sorted(n for n, e in table.items() if e.cls.kind == want)
                raise ChainError(
                    path,
                    link.line,
                    link.column,
                    f"'{link.name}' is a {link.cls.kind}; {where} must be a {want} ({', '.join(which)})",
                )
            _check_args(path, link, cf.path.parent, str(cf.path) if cf.rules_file else None)
        if len(spec.links) < 2:
            link = spec.links[0]
            raise ChainError(
                path, link.line, link.column + len(link.name), "expected '-> ...' up to a sink such as out(...)"
            )
    return cf


def _check_args(path: str, link: Link, base: Path, own_rules: str | None = None) -> None:
    declared: list[Param] = list(link.cls.params)
    by_name = {p.name: p for p in declared}
    given: dict[str, Arg] = {}
    positional = iter(p.name for p in declared)
    for arg in link.args:
        if arg.name == "bypass" and link.cls.kind == "transform" and "bypass" not in by_name:
            try:
                link.bypass = Param("bypass", "bool").parse(arg.text)
            except ParamError as e:
                raise ChainError(path, arg.line, arg.column, str(e)) from None
            continue
        name = arg.name
        if name is None:
            name = next((p for p in positional if p not in given), None)
            if name is None:
                raise ChainError(
                    path,
                    arg.line,
                    arg.column,
                    f"{link.name} takes {len(declared)} argument{'s' if len(declared) != 1 else ''}; this one is extra",
                )
        elif name not in by_name and getattr(link.cls, "open_params", False):
            if name in link.open_args:
                raise ChainError(path, arg.line, arg.column, f"{name} is given twice")
            link.open_args[name] = arg  # checked against the rules file's open parameters when it is read
            continue
        elif name not in by_name:
            known = ", ".join(by_name) or "none"
            raise ChainError(
                path,
                arg.line,
                arg.name_column,
                f"{link.name} has no parameter '{name}' (it has: {known}){did_you_mean(name, by_name)}",
            )
        if name in given:
            raise ChainError(path, arg.line, arg.column, f"{name} is given twice")
        given[name] = arg
    link.values, link.written = {}, {}
    for p in declared:
        arg = given.get(p.name)
        if arg is None and p.name == "rules" and own_rules is not None:
            link.values["rules"] = own_rules  # in a rules file's chain section: that file's rules
            continue
        if arg is None:
            if p.required:
                raise ChainError(path, link.line, link.column, f"{link.name} needs {p.name} ({p.expected()})")
            link.values[p.name] = p.default_value()
            continue
        try:
            value = p.parse(arg.text)
        except ParamError as e:
            raise ChainError(path, arg.line, arg.column, str(e)) from None
        if p.type == "path" and value:
            value = str(base / value) if not Path(value).is_absolute() else value
        link.values[p.name] = value
        link.written[p.name] = arg.text
    for name, arg in link.open_args.items():
        link.written[name] = arg.text
    problem = link.cls.check_values(link.values)
    if problem:
        raise ChainError(path, link.line, link.column, f"{link.name}: {problem}")


def load_chains(path, table: dict | None = None) -> ChainFile:
    """Read, parse and check a chain file (``table``: the registry; default: built in and plugins)."""
    from melody_lc.chain.registry import registry

    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ChainError(str(p), 1, 1, f"cannot read the chain file: {getattr(e, 'strerror', None) or e}") from None
    table, failed = (table, []) if table is not None else registry()
    return resolve(parse_chains(text, str(p), rules_file=p.suffix == ".rules"), table, failed)
