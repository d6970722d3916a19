"""A compiled rules file: vectorised rewards and exact tests, open parameters, static checks.

rules = load_rules("rules/c_major_busy.rules")
cond = rules.sample_conditions(n, rng)        # values of open parameters ('?'), if any
r = rules.rewards(tokens, cond)               # (N, R) in [0, 1], one column per rule
ok = rules.satisfied(tokens, cond)            # (N, R) bool
c = rules.condition_vector(cond)              # (N, D) float, the actor's and critics' input
steer = rules.steer(cond, n)                  # the decode-time constraints (model.decode(..., steer=steer))
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melody_lc.errors import UserError
from melody_lc.melody.encoding import BAR_STEPS, NUM_BARS, NUM_PITCHES
from melody_lc.melody.steer import Steer
from melody_lc.rules.checks import check_contradictions
from melody_lc.rules.constraints import Scoped
from melody_lc.rules.form import Form
from melody_lc.rules.kinds import Key, RuleKind, registry
from melody_lc.rules.syntax import Cursor, RulesError, SectionLine, did_you_mean, split_lines


class OpenValuesError(UserError, KeyError):
    """Rules with open parameters (``key: ? major``) used without a value for each of them."""

    def __str__(self) -> str:  # a KeyError's own str() would quote the message
        return str(self.args[0])


@dataclass
class Rule:
    kind: RuleKind
    params: dict
    weight: float
    line: int
    column: int
    text: str
    scope: tuple[int, int] | None = None  # 'bars 9-12:': first and last bar, 0-based

    def describe(self) -> str:
        w = f" (weight {self.weight:g})" if self.weight != 1 else ""
        where = f", in {self.scope_words()}" if self.scope is not None else ""
        return self.kind.describe(self.params) + where + w

    def scope_words(self) -> str:
        """'bars 9-12' (or 'bar 12') for a scoped rule, '' for one of the whole melody."""
        if self.scope is None:
            return ""
        a, b = self.scope[0] + 1, self.scope[1] + 1
        return f"bar {a}" if a == b else f"bars {a}-{b}"

    @property
    def steps(self) -> slice:
        """The steps of the melody the rule sees."""
        a, b = self.scope if self.scope is not None else (0, NUM_BARS - 1)
        return slice(a * BAR_STEPS, (b + 1) * BAR_STEPS)


class RuleSet:
    def __init__(self, rules: list[Rule], path: str = "<rules>", source: str = "") -> None:
        self.rules, self.path, self.source = rules, path, source
        self.section_words = ""  # 'phrases 2-4' for the rules of a section of a plan (melody_lc.rules.plan)
        self.open: dict[str, tuple] = {}
        for r in rules:
            self.open.update(r.kind.open_params(r.params))
        keys = [r for r in rules if isinstance(r.kind, Key)]
        self._key = next((r for r in keys if r.scope is None), keys[0] if keys else None)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def names(self) -> list[str]:
        return [f"{r.kind.name}:{r.line}" for r in self.rules]

    @property
    def weights(self) -> np.ndarray:
        return np.array([r.weight for r in self.rules], dtype=float)

    def digest(self) -> str:
        """Identifies the rules' meaning (not comments or spacing) for caches of fitted actors."""
        canon = "\n".join(
            f"{r.kind.name}|{sorted(r.params.items())}|{r.weight}" + (f"|bars {r.scope}" if r.scope else "")
            for r in self.rules
        )
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    # -- open parameters -------------------------------------------------------------------------
    def sample_conditions(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for name, spec in self.open.items():
            if spec[0] == "category":
                out[name] = rng.integers(0, spec[1], n)
            else:
                out[name] = rng.uniform(spec[1], spec[2], n)
        return out

    def fixed_conditions(self, n: int, **values) -> dict[str, np.ndarray]:
        """Conditions for n melodies with given values of the open parameters (e.g. tonic=7)."""
        self._check_values(values)
        return {k: np.full(n, values[k]) for k in self.open}

    @property
    def condition_size(self) -> int:
        return sum(spec[1] if spec[0] == "category" else 1 for spec in self.open.values())

    def condition_vector(self, cond: dict[str, np.ndarray]) -> np.ndarray:
        """(N, condition_size): one-hot categories, ranges scaled to [-1, 1]."""
        cols = []
        for name, spec in self.open.items():
            v = np.asarray(cond[name])
            if spec[0] == "category":
                cols.append(np.eye(spec[1])[v.astype(int)])
            else:
                cols.append((2 * (v - spec[1]) / (spec[2] - spec[1]) - 1)[:, None])
        n = len(next(iter(cond.values()))) if cond else 0
        return np.concatenate(cols, 1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)

    def conditions_from_vector(self, vec: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`condition_vector`."""
        out, col = {}, 0
        for name, spec in self.open.items():
            if spec[0] == "category":
                out[name] = vec[:, col : col + spec[1]].argmax(1)
                col += spec[1]
            else:
                out[name] = (vec[:, col] + 1) / 2 * (spec[2] - spec[1]) + spec[1]
                col += 1
        return out

    def _check_values(self, values: dict) -> None:
        missing = sorted(set(self.open) - set(values))
        if missing:
            raise OpenValuesError(
                f"no value given for the open parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"of these rules (e.g. values={{'{missing[0]}': ...}})"
            )

    # -- scoring ---------------------------------------------------------------------------------
    def _cond(self, tokens_or_n, cond: dict | None) -> dict:
        n = tokens_or_n if isinstance(tokens_or_n, int) else len(tokens_or_n)
        cond = dict(cond or {})
        self._check_values(cond)
        if self._key is not None:
            cond["_tonic"] = Key.tonic(self._key.params, cond, n)
        return cond

    def _rule_cond(self, r: Rule, cond: dict, n: int) -> dict:
        """What rule r's kind gets as ``cond``: the open values, the steps it sees, and the tonic of
        the key rule of its own bars (else of the first key rule)."""
        c = dict(cond, _steps=r.steps.stop - r.steps.start)
        if getattr(r.kind, "needs_ceiling", False):  # the climax: room above, and which bars the form copies
            c["_ceiling"] = self.ceiling(cond, n)
            c["_bar_source"] = self.bar_source()
        key = next((k for k in self.rules if isinstance(k.kind, Key) and k.scope == r.scope and r.scope), None)
        if key is not None:
            c["_tonic"] = Key.tonic(key.params, cond, n)
        return c

    def ceiling(self, cond: dict, n: int) -> np.ndarray:
        """(n,) the highest pitch that the key and range rules of the whole melody allow (-1: none)."""
        high = min((r.params["high"] for r in self.rules if r.kind.name == "range" and r.scope is None), default=127)
        allowed = np.ones((n, 12), bool)
        for r in self.rules:
            if isinstance(r.kind, Key) and r.scope is None:
                allowed &= r.kind.pitch_classes(r.params, cond, n)
        pitches = np.arange(128)
        ok = (pitches <= high)[None, :] & allowed[:, pitches % 12]
        return np.where(ok.any(1), 127 - ok[:, ::-1].argmax(1), -1)

    def _each(self, tokens, cond: dict | None):
        """(rule, the tokens it sees, its cond) for every rule."""
        c = self._cond(tokens, cond)
        return [(r, tokens[:, r.steps], self._rule_cond(r, c, len(tokens))) for r in self.rules]

    def bar_source(self) -> list[int] | None:
        """For a form rule: the bar whose conductor embedding each bar is decoded from (a repeated
        phrase's bars from its first statement's), so that the decoder itself writes the repeat;
        None when no bar repeats another note for note."""
        forms = [r for r in self.rules if isinstance(r.kind, Form)]
        if not forms:
            return None
        source = [min(Form.copies(forms[0].params["labels"], bar)) for bar in range(NUM_BARS)]
        return None if source == list(range(NUM_BARS)) else source

    def steer(self, cond: dict | None, n: int, share_bars: bool = True) -> Steer:
        """The decode-time constraints of every rule whose kind has one, for n melodies (and with
        ``share_bars``, the form's repeated bars decoded from shared embeddings)."""
        c = self._cond(n, cond)
        made = []
        source = self.bar_source()
        for name, r in zip(self.names, self.rules):
            rc = self._rule_cond(r, c, n)
            k = r.kind.constraint(r.params, rc, n)
            if k is not None and r.scope is not None:
                made.append((name, Scoped(k, r.steps.start, r.steps.stop)))
                # A scoped rule on bars that the form copies holds on the bars they copy too: the
                # copy is made note for note, so the first statement must already obey it.
                first, last = r.scope
                src = source[first : last + 1] if source else []
                if src and src[0] != first and src == list(range(src[0], src[0] + len(src))):
                    again = r.kind.constraint(r.params, rc, n)  # a constraint of its own: it keeps state
                    made.append((name, Scoped(again, src[0] * BAR_STEPS, (src[-1] + 1) * BAR_STEPS)))
            else:
                made.append((name, k))
        return Steer([(name, k) for name, k in made if k is not None], bar_source=source if share_bars else None)

    @property
    def verified_only(self) -> list[str]:
        """Rules whose kind has no decode-time constraint (a plugin's): kept by verification alone."""
        return [name for name, r in zip(self.names, self.rules) if type(r.kind).constraint is RuleKind.constraint]

    def rewards(self, tokens, cond: dict | None = None) -> np.ndarray:
        """(N, R) rewards in [0, 1]."""
        t = _as_tokens(tokens)
        cols = [
            np.clip(np.asarray(r.kind.reward(v, r.params, c), dtype=float), 0.0, 1.0) for r, v, c in self._each(t, cond)
        ]
        return np.stack(cols, 1) if cols else np.zeros((len(t), 0))

    def satisfied(self, tokens, cond: dict | None = None) -> np.ndarray:
        """(N, R) exact tests."""
        t = _as_tokens(tokens)
        cols = [np.asarray(r.kind.satisfied(v, r.params, c), dtype=bool) for r, v, c in self._each(t, cond)]
        return np.stack(cols, 1) if cols else np.ones((len(t), 0), bool)

    def violations(self, tokens, cond: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(notes (N, 256) bool, melodies (N,) bool): the note-ons that break a rule, and the
        melodies that break any (some rules, such as the rest share, have no single note to blame)."""
        t = _as_tokens(tokens)
        notes = np.zeros(t.shape, bool)
        for r, v, c in self._each(t, cond):
            notes[:, r.steps] |= np.asarray(r.kind.offending_notes(v, r.params, c), dtype=bool)
        return notes & (t < NUM_PITCHES), ~self.satisfied(t, cond).all(1)

    def reward(self, tokens, cond: dict | None = None) -> np.ndarray:
        """(N,) weighted geometric mean of the rule rewards: 1 only when every rule is met."""
        r = self.rewards(tokens, cond)
        w = self.weights
        return np.exp((np.log(np.maximum(r, 1e-12)) * w).sum(1) / w.sum()) if len(w) else np.ones(len(r))

    def explain(self) -> str:
        lines = [f"{self.path}: {len(self.rules)} rule{'s' if len(self.rules) != 1 else ''}"]
        for r in self.rules:
            where = f"{r.scope_words()}: " if r.scope is not None else ""
            w = f" (weight {r.weight:g})" if r.weight != 1 else ""
            lines.append(f"  line {r.line}: {where}{r.kind.name}: {r.kind.describe(r.params)}{w}")
        if self.open:
            lines.append(
                "  open parameters (chosen when generating; one fitted actor serves every value): "
                + ", ".join(self.open)
            )
        return "\n".join(lines)


def _as_tokens(tokens) -> np.ndarray:
    """Kinds (plugins too) get signed int64 tokens of shape (N, 256): uint8 would wrap -1 to 255."""
    t = np.asarray(tokens).astype(np.int64)
    if t.ndim != 2 or t.shape[1] != 256:
        raise ValueError(f"expected tokens of shape (N, 256), got {t.shape}")
    return t


# --------------------------------------------------------------------------------------------------
def parse_rules(text: str, path: str = "<rules>", phrase: int | None = None) -> RuleSet:
    """Parse and check a rules text; raise :class:`RulesError` at the first problem. A file with
    phrase sections (``phrase 2:``) needs ``phrase`` (1-based): the rules of that phrase."""
    lines = split_lines(text, path)
    if any(isinstance(rl, SectionLine) for rl in lines):
        from melody_lc.rules.plan import parse_plan

        return parse_plan(text, path).rules_of_phrase(phrase)
    return compile_rules(lines, path, text)


def compile_rules(lines: list, path: str, text: str, empty_ok: bool = False) -> RuleSet:
    """The checked RuleSet of rule lines (from :func:`split_lines`, no section headers)."""
    kinds = registry()
    rules = []
    for rl in lines:
        kind = kinds.get(rl.kind)
        if kind is None:
            raise RulesError(
                path,
                rl.line,
                rl.kind_column,
                f"unknown rule kind '{rl.kind}'"
                + did_you_mean(rl.kind, kinds)
                + f" (kinds: {', '.join(sorted({k.name for k in kinds.values()}))})",
            )
        if rl.scope is not None and getattr(kind, "names_bars", False):
            raise RulesError(
                path, rl.line, rl.kind_column, f"'{kind.name}' names its own bars: it cannot be scoped to bars"
            )
        if rl.scope is not None and getattr(kind, "whole_only", None):
            raise RulesError(
                path, rl.line, rl.kind_column, f"'{kind.name}' {kind.whole_only}: it cannot be scoped to bars"
            )
        cur = Cursor(path, rl.line, rl.args, rl.args_offset)
        params = kind.parse(cur)
        cur.done()
        rules.append(Rule(kind, params, rl.weight, rl.line, rl.kind_column, rl.text, rl.scope))
    if not rules and not empty_ok:
        raise RulesError(path, 1, 1, "no rules in this file (expected lines such as 'key: C major')")
    check_contradictions(rules, path)
    return RuleSet(rules, path, text)


def read_rules_text(path: str | os.PathLike) -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(str(p), 0, 0, "no such rules file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RulesError(str(p), 0, 0, f"cannot read: {e}") from None


def load_rules(path: str | os.PathLike, phrase: int | None = None) -> RuleSet:
    """The rules of a file (of its phrase ``phrase``, 1-based, when it has phrase sections)."""
    return parse_rules(read_rules_text(path), str(path), phrase)
