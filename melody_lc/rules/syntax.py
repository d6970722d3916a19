"""The rules file format: lines of ``kind: arguments [weight W]``, ``#`` comments, blank lines.

    # bright and busy, in C major
    key: C major
    density: >= 3 notes per bar
    range: C4 .. C6
    leap: <= 7 semitones
    rests: <= 25%            weight 2

A ``#`` starts a comment at the start of a line or after a space (so ``F#`` stays a note name).
A line ``bars 9-12:`` before a rule scopes it to those bars; a line ``phrase 2:`` (or ``phrases
2-4:``, ``phrases 2-4: morph``) starts a section of a stream's phrases (melody_lc.rules.plan).
This module splits a file into :class:`RuleLine` objects and gives each rule kind a
:class:`Cursor` over its arguments, which reports errors as ``file:line:column: message``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from melody_lc.errors import LocatedError
from melody_lc.melody.encoding import NUM_BARS

_TOKEN = re.compile(r"\s*(\.\.|>=|<=|==|[<>=%?,(){}]|[^\s<>=%?,(){}.]+(?:\.\d+)?|\.)")


class RulesError(LocatedError):
    """An error in a rules file, located at ``path:line:column``."""


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Token:
    text: str
    column: int  # 1-based, in the file's line


class Cursor:
    """Tokens of one rule's arguments, with helpers that raise located :class:`RulesError`."""

    def __init__(self, path: str, line: int, text: str, offset: int) -> None:
        self.path, self.line = path, line
        self.tokens: list[Token] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or not m.group(1):
                break
            self.tokens.append(Token(m.group(1), offset + m.start(1) + 1))
            pos = m.end()
        self.i = 0
        self.text = text  # the arguments as written (a kind may read them whole: a path)
        self.end_column = offset + len(text.rstrip()) + 1

    # -- reading ---------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Token | None:
        return self.tokens[self.i + k] if self.i + k < len(self.tokens) else None

    def at_end(self) -> bool:
        return self.i >= len(self.tokens)

    def next(self, expected: str) -> Token:
        tok = self.peek()
        if tok is None:
            self.fail(f"expected {expected}, found the end of the line", self.end_column)
        self.i += 1
        return tok

    def accept(self, *words: str) -> Token | None:
        tok = self.peek()
        if tok is not None and tok.text.lower() in words:
            self.i += 1
            return tok
        return None

    def expect(self, *words: str, what: str | None = None) -> Token:
        tok = self.next(what or " or ".join(f"'{w}'" for w in words))
        if tok.text.lower() not in words:
            self.fail(
                f"expected {what or ' or '.join(repr(w) for w in words)}, found '{tok.text}'"
                + did_you_mean(tok.text, words),
                tok.column,
            )
        return tok

    def number(self, what: str = "a number", integer: bool = False) -> tuple[float, Token]:
        tok = self.next(what)
        try:
            value = int(tok.text) if integer else float(tok.text)
        except ValueError:
            self.fail(f"expected {what}, found '{tok.text}'", tok.column)
        return value, tok

    def done(self) -> None:
        tok = self.peek()
        if tok is not None:
            self.fail(f"unexpected '{tok.text}' after the end of the rule", tok.column)

    def fail(self, message: str, column: int | None = None):
        raise RulesError(self.path, self.line, column or self.end_column, message)


@dataclass(frozen=True)
class RuleLine:
    kind: str
    kind_column: int
    args: str
    args_offset: int  # 0-based column where ``args`` starts in the line
    weight: float
    line: int
    text: str
    scope: tuple[int, int] | None = None  # 'bars 1-8:' before the kind: first and last bar, 0-based


@dataclass(frozen=True)
class SectionLine:
    """A section header, ``phrase 2:``, ``phrases 2-4:`` or ``phrases 2-4: morph``: the rule lines
    after it, up to the next header, hold for those phrases of a stream (see melody_lc.rules.plan)."""

    first: int  # phrases, 0-based
    last: int
    morph: bool
    line: int
    column: int  # of 'phrase'


_COMMENT = re.compile(r"(^|\s)#.*$")  # '#' starts a comment at the line start or after a space (F# is a note)
_WEIGHT = re.compile(r"\s+weight\s+(\S+)\s*$", re.IGNORECASE)


def strip_comment(line: str) -> str:
    """A line of a rules file without its comment and trailing space."""
    return _COMMENT.sub("", line).rstrip()


_SCOPE = re.compile(r"^(\s*)bars?\s+([^:]+?)\s*:", re.IGNORECASE)  # 'bars 1-8:', 'bar 12:'
_SPAN = re.compile(r"(\d+)(?:\s*(?:-|\.\.)\s*(\d+))?$")


def parse_span(text: str, path: str, line: int, column: int, what: str = "bars") -> tuple[int, int]:
    """'9-12', '9..12' or '12' -> (8, 11): first and last bar, 0-based, checked against bars 1-16."""
    m = _SPAN.match(text.strip())
    if not m:
        raise RulesError(path, line, column, f"expected {what} such as '1-8' or '12', found '{text.strip()}'")
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= first <= NUM_BARS or not 1 <= last <= NUM_BARS:
        raise RulesError(path, line, column, f"bars are numbered 1 to {NUM_BARS}: '{text.strip()}' lies outside")
    if last < first:
        raise RulesError(path, line, column, f"the span '{text.strip()}' is empty: bar {last} comes before bar {first}")
    return first - 1, last - 1


_SECTION = re.compile(r"^(\s*)(phrases?)\s+([^:]*?)\s*:\s*(.*)$", re.IGNORECASE)  # 'phrases 2-4: morph'
_PHRASES = re.compile(r"(\d+)(?:\s*(?:-|\.\.)\s*(\d+))?$")


def _section(line: str, path: str, n: int) -> SectionLine | None:
    m = _SECTION.match(line)
    if not m or not re.fullmatch(r"\d[\d\s.-]*", m.group(3)):
        return None
    span = _PHRASES.match(m.group(3))
    col = m.start(3) + 1
    if not span:
        raise RulesError(path, n, col, f"expected phrases such as '2' or '2-4', found '{m.group(3)}'")
    first, last = int(span.group(1)), int(span.group(2) or span.group(1))
    if first < 1:
        raise RulesError(path, n, col, "phrases are numbered from 1")
    if last < first:
        raise RulesError(path, n, col, f"the span '{m.group(3)}' is empty: phrase {last} comes before phrase {first}")
    rest = m.group(4).strip()
    if rest and rest.lower() != "morph":
        raise RulesError(
            path,
            n,
            m.start(4) + 1,
            f"expected nothing or 'morph' after '{m.group(2)} {m.group(3)}:', found '{rest}'"
            + did_you_mean(rest, ["morph"])
            + " (a section's rules go on the lines below it)",
        )
    return SectionLine(first - 1, last - 1, bool(rest), n, len(m.group(1)) + 1)


_CHAIN_LINE = re.compile(r"^\s*(chain\b[^:]*:|tempo\s*:|->)")  # the file's own chain section (melody_lc.chain)


def split_lines(text: str, path: str) -> list[RuleLine | SectionLine]:
    """The rule lines of a file (comments and blank lines dropped), weights split off, and its
    section headers (``phrase 2:``) where they stand. Lines of a chain section (``chain NAME: ...``,
    lines going on with ``->``, ``tempo: ...``) belong to the plugin host and are skipped here."""
    out: list[RuleLine | SectionLine] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw)
        if not line.strip() or _CHAIN_LINE.match(line):
            continue
        header = _section(line, path, n)
        if header is not None:
            out.append(header)
            continue
        indent = len(line) - len(line.lstrip())
        scope, scope_width = None, 0
        m = _SCOPE.match(line)
        if m:
            span_text = line[m.start(2) : m.end(2)]
            scope = parse_span(span_text, path, n, m.start(2) + 1)
            scope_width = m.end()
            rest = line[scope_width:]
            indent = scope_width + len(rest) - len(rest.lstrip())
            line = " " * scope_width + rest
        if ":" not in line:
            raise RulesError(path, n, indent + 1, "expected 'kind: ...' (for example 'key: C major')")
        kind, args = line.split(":", 1)
        kind_name = kind.strip().lower()
        if kind_name == "morph":
            raise RulesError(
                path, n, indent + 1, "a morph is a section of phrases: write 'phrases 2-4: morph' on a line of its own"
            )
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", kind_name):
            raise RulesError(path, n, indent + 1, f"expected a rule kind before ':', found '{kind.strip()}'")
        weight = 1.0
        m = _WEIGHT.search(args)
        if m:
            wcol = len(kind) + 1 + m.start(1) + 1
            try:
                weight = float(m.group(1))
            except ValueError:
                raise RulesError(path, n, wcol, f"expected a number after 'weight', found '{m.group(1)}'") from None
            if not weight > 0:
                raise RulesError(path, n, wcol, f"a weight must be positive, found {m.group(1)}")
            args = args[: m.start()]
        out.append(RuleLine(kind_name, indent + 1, args, len(kind) + 1, weight, n, raw, scope))
    return out
