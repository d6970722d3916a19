"""Rules that change from phrase to phrase: a file's sections, played in turn by `stream` and `live`.

    key: C major                  # before any section: holds in every phrase
    phrase 1:                     # the rules of phrase 1 (with those above)
    density: <= 2 notes per bar
    phrases 2-3: morph            # from phrase 1's rules to phrase 4's, a step each phrase
    phrase 4:
    density: >= 4 notes per bar

Sections number the phrases from 1 without gaps or overlaps; after the last, the plan starts again
at phrase 1. A section of several phrases (``phrases 2-3:``) plays its rules in each of them.

A morph section has no rules of its own. Its phrases are the paper's change of attributes over
time (Fig. 3): the walk's latent z is moved by the actor of the section before, G_a, and by the
actor of the section after, G_b, and the phrase is decoded from (1 - t) G_a(z) + t G_b(z), with
t = j / (m + 1) at its j-th of m phrases. A morph's phrase is held to the rules every phrase shares
(checked and enforced like any other phrase); the rules of the two sides are what it moves between,
and how many of each it meets is reported with it. A morph at the end moves toward phrase 1, where
the plan starts again; a morph cannot come first.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from melody_lc.rules.ruleset import RuleSet, compile_rules, read_rules_text
from melody_lc.rules.syntax import RulesError, SectionLine, split_lines


def phrases_words(first: int, last: int) -> str:
    """'phrase 2' or 'phrases 2-4' (from 0-based indices)."""
    return f"phrase {first + 1}" if first == last else f"phrases {first + 1}-{last + 1}"


@dataclass
class Section:
    first: int  # phrases, 0-based
    last: int
    line: int
    rules: RuleSet | None  # the shared rules and the section's own; None for a morph

    @property
    def morph(self) -> bool:
        return self.rules is None

    @property
    def words(self) -> str:
        return phrases_words(self.first, self.last)


@dataclass(frozen=True)
class Step:
    """What one phrase of the stream plays: a section's rules, or a morph between two sections."""

    section: Section
    rules: RuleSet | None  # the rules the phrase is held to: its section's, or the shared ones in a morph
    source: Section | None = None  # a morph's two sides and how far it has come (0 < t < 1)
    target: Section | None = None
    t: float = 0.0

    def words(self, length: int, index: int) -> str:
        where = f"phrase {index % length + 1} of {length}"
        if self.source is None:
            return where
        j = index % length - self.section.first + 1
        m = self.section.last - self.section.first + 1
        return f"{where}: morph {j}/{m} from {self.source.words} to {self.target.words}"


class Plan:
    """The sections of a rules file. A file without sections is a plan of one section that holds
    in every phrase."""

    def __init__(self, path: str, shared: RuleSet, sections: list[Section]) -> None:
        self.path, self.shared, self.sections = path, shared, sections

    @property
    def sectioned(self) -> bool:
        return len(self.sections) > 1 or self.sections[0].last > 0

    @property
    def length(self) -> int:
        """Phrases before the plan starts again."""
        return self.sections[-1].last + 1

    def section_at(self, index: int) -> Section:
        k = index % self.length
        return next(s for s in self.sections if s.first <= k <= s.last)

    def at(self, index: int) -> Step:
        """What phrase ``index`` (0-based, from the start of the stream) plays."""
        s = self.section_at(index)
        if not s.morph:
            return Step(s, s.rules)
        i = self.sections.index(s)
        source, target = self.sections[i - 1], self.sections[(i + 1) % len(self.sections)]
        t = (index % self.length - s.first + 1) / (s.last - s.first + 2)
        return Step(s, self.shared if len(self.shared) else None, source, target, t)

    @property
    def open(self) -> dict[str, tuple]:
        """The open parameters of every section (one value each for the whole stream)."""
        return {k: v for rs in self.rulesets() for k, v in rs.open.items()}

    def digest(self) -> str:
        """Identifies what the plan plays (each section's span and rules), as RuleSet.digest does."""
        canon = "/".join(f"{s.first}-{s.last}:{s.rules.digest() if s.rules else 'morph'}" for s in self.sections)
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def every_rule(self) -> RuleSet:
        """Every rule of the file, shared and of each section, in the file's order (for a display,
        and for the open parameters of the whole stream); phrases are scored by their own rules."""
        if not self.sectioned:
            return self.sections[0].rules
        seen, rules = set(), []
        for rs in [self.shared] + self.rulesets():
            for r in rs.rules:
                if r.line not in seen:
                    seen.add(r.line)
                    rules.append(r)
        return RuleSet(sorted(rules, key=lambda r: r.line), self.path, self.shared.source)

    def rulesets(self) -> list[RuleSet]:
        """The rules of each section that has its own (each needs a fitted actor)."""
        return [s.rules for s in self.sections if not s.morph]

    def rules_of_phrase(self, phrase: int | None) -> RuleSet:
        """The rules of phrase ``phrase`` (1-based), for the commands that make one melody at a time."""
        if not self.sectioned:
            return self.sections[0].rules
        if phrase is None:
            raise RulesError(
                self.path,
                self.sections[0].line,
                1,
                f"the rules change from phrase to phrase here (phrases 1-{self.length}): `stream` and `live` "
                "play the sections in turn; for one phrase's rules give --phrase N",
            )
        if not 1 <= phrase <= self.length:
            raise RulesError(self.path, 0, 0, f"--phrase {phrase}: this file has phrases 1-{self.length}")
        step = self.at(phrase - 1)
        if step.source is not None:
            raise RulesError(
                self.path,
                step.section.line,
                1,
                f"phrase {phrase} is a morph between {step.source.words} and {step.target.words}: it has no "
                "rules of its own to generate from; give a phrase of a section with rules",
            )
        return step.rules

    def explain(self) -> str:
        if not self.sectioned:
            return self.sections[0].rules.explain()
        lines = [
            f"{self.path}: {self.length} phrases in {len(self.sections)} sections, played in turn and then "
            "again from phrase 1"
        ]
        if len(self.shared):
            lines.append("  every phrase:")
            lines += ["  " + line for line in self.shared.explain().splitlines()[1:]]
        for s in self.sections:
            if s.morph:
                i = self.sections.index(s)
                a, b = self.sections[i - 1], self.sections[(i + 1) % len(self.sections)]
                lines.append(
                    f"  line {s.line}: {s.words}: morph from {a.words}'s rules to {b.words}'s, a step each phrase"
                    + (" (held to the rules every phrase shares)" if len(self.shared) else "")
                )
                continue
            own = [r for r in s.rules.rules if r not in self.shared.rules]
            lines.append(f"  line {s.line}: {s.words}:" + ("" if own else " the shared rules alone"))
            for r in own:
                where = f"{r.scope_words()}: " if r.scope is not None else ""
                w = f" (weight {r.weight:g})" if r.weight != 1 else ""
                lines.append(f"    line {r.line}: {where}{r.kind.name}: {r.kind.describe(r.params)}{w}")
        opened = sorted({k for rs in self.rulesets() for k in rs.open})
        if opened:
            lines.append("  open parameters (chosen once for the stream): " + ", ".join(opened))
        return "\n".join(lines)


def parse_plan(text: str, path: str = "<rules>") -> Plan:
    lines = split_lines(text, path)
    shared_lines, groups = [], []  # groups: (header, its rule lines)
    for rl in lines:
        if isinstance(rl, SectionLine):
            groups.append((rl, []))
        elif groups:
            groups[-1][1].append(rl)
        else:
            shared_lines.append(rl)
    shared = compile_rules(shared_lines, path, text, empty_ok=bool(groups))
    if not groups:
        return Plan(path, shared, [Section(0, 0, 1, shared)])
    sections, expected = [], 0
    for header, own in groups:
        if header.first != expected:
            prev = f"after {phrases_words(sections[-1].first, sections[-1].last)} " if sections else ""
            raise RulesError(
                path,
                header.line,
                header.column,
                f"expected phrase {expected + 1} here {prev}(sections number the phrases in turn, "
                f"without gaps or overlaps), found {phrases_words(header.first, header.last)}",
            )
        expected = header.last + 1
        if header.morph:
            if own:
                raise RulesError(
                    path,
                    own[0].line,
                    own[0].kind_column,
                    "a morph section has no rules of its own: it moves from the section before it to the one "
                    "after it (rules for every phrase go above the first section)",
                )
            if not sections:
                raise RulesError(
                    path, header.line, header.column, "a morph cannot come first: it moves from the section before it"
                )
            if sections[-1].morph:
                raise RulesError(
                    path, header.line, header.column, "two morphs in a row: put a section with rules between them"
                )
            sections.append(Section(header.first, header.last, header.line, None))
            continue
        rules = compile_rules(shared_lines + own, path, text, empty_ok=False) if shared_lines + own else None
        if rules is None:
            raise RulesError(
                path, header.line, header.column, "no rules for this section, and none above the first section"
            )
        rules.section_words = phrases_words(header.first, header.last)
        sections.append(Section(header.first, header.last, header.line, rules))
    if sections[-1].morph and sections[0].morph:
        raise RulesError(path, sections[-1].line, 1, "a morph at the end needs a section with rules at phrase 1")
    if sections[-1].morph and len(sections) < 2:
        raise RulesError(path, sections[-1].line, 1, "a morph needs sections with rules on both sides")
    return Plan(path, shared, sections)


def load_plan(path: str | os.PathLike) -> Plan:
    return parse_plan(read_rules_text(path), str(path))
