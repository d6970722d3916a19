"""Static checks of a rules file: rules that no melody can satisfy together, when that can be seen
without sampling (disjoint keys, empty ranges, more notes than others allow, a climax the form
repeats elsewhere). Each is a located :class:`RulesError`; contradictions that only the decode-time
constraints find are reported by the steer as dead ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from melody_lc.melody.encoding import BAR_STEPS, NUM_BARS
from melody_lc.melody.pitches import NAMES, pitch_name
from melody_lc.rules.form import Form
from melody_lc.rules.kinds import Key
from melody_lc.rules.syntax import RulesError

if TYPE_CHECKING:
    from melody_lc.rules.ruleset import Rule


def _fail(path: str, rule: Rule, message: str):
    raise RulesError(path, rule.line, rule.column, message)


def _interval(rules: list[Rule], name: str) -> tuple[float, float, Rule | None]:
    low, high, last = -np.inf, np.inf, None
    for r in rules:
        if r.kind.name == name and not r.params.get("open") and not r.params.get("average"):
            if r.params["low"] is not None:
                low = max(low, r.params["low"])
            if r.params["high"] is not None:
                high = min(high, r.params["high"])
            last = r
    return low, high, last


def check_contradictions(rules: list[Rule], path: str) -> None:
    """Rules that no melody can satisfy together, when that can be seen without sampling: the rules
    of the whole melody together, and those of each scope with the whole melody's rules that hold
    in every bar (key, range, notes per bar)."""
    for r in rules:
        if (
            r.kind.name in ("start", "end")
            and r.params["pc"] is None
            and not any(isinstance(k.kind, Key) for k in rules)
        ):
            _fail(path, r, f"'{r.kind.name}: on tonic' needs a key rule to say which tonic")
    whole = [r for r in rules if r.scope is None]
    _check_group(whole, path, NUM_BARS)
    _check_form(whole, path)
    every_bar = [
        r for r in whole if r.kind.name in ("key", "range") or (r.kind.name == "density" and not r.params["average"])
    ]
    for scope in sorted({r.scope for r in rules if r.scope is not None}):
        _check_group(every_bar + [r for r in rules if r.scope == scope], path, scope[1] - scope[0] + 1)


def _check_form(rules: list[Rule], path: str) -> None:
    """A climax in bars that the form repeats elsewhere note for note: the copy's highest note
    sounds outside the climax's bars too."""
    for f in (r for r in rules if r.kind.name == "form"):
        for c in (r for r in rules if r.kind.name == "climax"):
            span = range(c.params["first"], c.params["last"] + 1)
            if not any(all(b in span for b in Form.copies(f.params["labels"], bar)) for bar in span):
                _fail(
                    path,
                    c,
                    f"the climax's bars are repeated note for note elsewhere by the form of line {f.line}, "
                    "so its highest note sounds outside them too",
                )


def _check_group(rules: list[Rule], path: str, bars: int) -> None:
    keys = [r for r in rules if isinstance(r.kind, Key)]
    allowed = np.ones(12, bool)
    for k in keys:
        p = k.params
        if p["tonic"] is None:
            continue
        row = np.zeros(12, bool)
        row[[(p["tonic"] + d) % 12 if p["mode"] else d for d in p["pcs"]]] = True
        allowed &= row
        if not allowed.any():
            _fail(path, k, "contradicts the earlier key rule(s): no pitch class is in all of them")
    for name, unit in (
        ("density", "notes per bar"),
        ("leap", "semitones"),
        ("rests", "of the time"),
        ("distinct", "pitches"),
    ):
        low, high, last = _interval(rules, name)
        if last is not None and low > high:
            _fail(path, last, f"contradicts an earlier {name} rule: at least {low:g} and at most {high:g} {unit}")
    ranges = [r for r in rules if r.kind.name == "range"]
    lo = max((r.params["low"] for r in ranges), default=0)
    hi = min((r.params["high"] for r in ranges), default=127)
    if ranges and lo > hi:
        _fail(
            path,
            ranges[-1],
            f"contradicts an earlier range rule: no pitch lies in both ({pitch_name(lo)} above {pitch_name(hi)})",
        )
    _check_counts(rules, path, allowed, lo, hi, bool(keys), bars)
    d_low, _, d_rule = _interval(rules, "distinct")
    if d_rule is not None:
        fixed_key = all(k.params["tonic"] is not None for k in keys)
        pitches = [p for p in range(lo, hi + 1) if allowed[p % 12]] if fixed_key else list(range(lo, hi + 1))
        if d_low > len(pitches):
            _fail(
                path,
                d_rule,
                f"asks for at least {d_low:g} different pitches but the key and range allow only {len(pitches)}",
            )
        _, leap_high, leap_rule = _interval(rules, "leap")
        nearest = min((b - a for a, b in zip(pitches, pitches[1:])), default=None)
        if d_low >= 2 and leap_rule is not None and nearest is not None and leap_high < nearest:
            # no step from one note to the next may change the pitch: every note repeats the first
            _fail(
                path,
                d_rule,
                f"asks for at least {d_low:g} different pitches but line {leap_rule.line} allows leaps of at most "
                f"{leap_high:g} semitones, and no two pitches of the key and range lie that close (nearest: {nearest})",
            )


def _check_counts(
    rules: list[Rule], path: str, allowed: np.ndarray, lo: int, hi: int, has_key: bool, bars: int
) -> None:
    """Rules that together need more notes than others allow, more silence than the notes leave,
    or a leap wider than the range, in ``bars`` bars."""
    steps = bars * BAR_STEPS
    need, room = [(0, None)], [(steps, None)]  # (notes, the rule that says so)
    for r in rules:
        p, name = r.params, r.kind.name
        if name in ("key", "start", "end", "climax"):
            need.append((1, r))  # fails a melody without notes
        elif name == "density" and not p["open"]:
            per = bars
            if p["low"] is not None:
                need.append((int(np.ceil(p["low"] * per - 1e-7)), r))
            if p["high"] is not None:
                room.append((int(np.floor(p["high"] * per + 1e-7)), r))
        elif name == "distinct" and p["low"] is not None:
            need.append((int(np.ceil(p["low"] - 1e-7)), r))
        elif name == "leap" and p["low"]:
            need.append((2, r))
            if p["low"] > hi - lo:
                _fail(path, r, f"asks for a leap of at least {p['low']:g} semitones but the range spans only {hi - lo}")
    (most_needed, needer), (least_room, limiter) = max(need, key=lambda x: x[0]), min(room, key=lambda x: x[0])
    if most_needed > least_room:
        _fail(
            path,
            needer,
            f"needs at least {most_needed} note{'s' if most_needed != 1 else ''} but line {limiter.line} allows at most {least_room}",
        )
    for r in rules:
        if r.kind.name != "rests":
            continue
        low, high = r.params["low"], r.params["high"]
        if low is not None and np.ceil(low * steps - 1e-7) > steps - most_needed:
            _fail(
                path,
                r,
                f"asks for at least {low:.0%} silence but line {needer.line} needs {most_needed} notes, "
                f"which sound at least {most_needed} of the {steps} steps",
            )
        if high is not None and high < 1 and least_room == 0:
            _fail(path, r, f"asks for at most {high:.0%} silence but line {limiter.line} allows no notes")
    for r in rules:  # start and end on a pitch class the key or the range leaves out
        if r.kind.name not in ("start", "end"):
            continue
        key = next((k for k in rules if isinstance(k.kind, Key)), None)
        pc = r.params["pc"]
        if pc is None and key is not None and key.params["tonic"] is not None:
            pc = key.params["tonic"] if key.params["mode"] else key.params["pcs"][0]
        if pc is None:
            continue
        if (
            r.params["pc"] is not None
            and has_key
            and all(k.params["tonic"] is not None for k in rules if isinstance(k.kind, Key))
            and not allowed[pc]
        ):
            _fail(
                path,
                r,
                f"asks for the {'first' if r.kind.name == 'start' else 'last'} note on {NAMES[pc]}"
                f" but line {key.line} leaves that pitch class out",
            )
        if not any(p % 12 == pc for p in range(lo, hi + 1)):
            _fail(path, r, f"no {NAMES[pc]} lies in the range {pitch_name(lo)} .. {pitch_name(hi)}")
    if has_key and lo <= hi and not any(allowed[p % 12] for p in range(lo, hi + 1)):
        key = next(r for r in rules if isinstance(r.kind, Key))
        _fail(path, key, f"no pitch of this key lies in the range {pitch_name(lo)} .. {pitch_name(hi)}")
