"""The constraint kinds of the rules language, and the plugin entry point that adds more.

Each kind parses its arguments into a params dict and scores batches of melodies (tokens of
shape (N, 256)). The built-in kinds measure a *violation* >= 0 (0 exactly when the rule holds):
``satisfied`` is ``violation == 0`` and ``reward`` is ``exp(-violation / scale)``, which is 1 when
met and falls smoothly with the size of the violation.

Each built-in kind also compiles to a decode-time constraint (``constraint``), a mask over the 130
classes per melody and step (:mod:`melody_lc.rules.constraints`), so that what melody-lc hands over
obeys the rule: the mask makes it so while decoding, the exact test checks it afterwards.

Plugins (API version 2; version 1 still loads): a package declares an entry point in the group
``melody_lc.rules`` that names a :class:`RuleKind` subclass (or instance). It must set ``name`` and
``summary``, implement ``parse(cursor) -> params`` and ``describe(params) -> str``, and either
``violation`` (with a ``scale``) or both ``reward`` and ``satisfied`` (a reward need not be
differentiable: only its values are used). Version 2 adds the optional ``constraint(params, cond,
n)`` hook returning a :class:`melody_lc.melody.steer.Constraint`; a kind without one is enforced by
verification alone (a melody that fails its test is redrawn). See docs/rules.md for a complete
example.
"""

from __future__ import annotations

import numpy as np

from melody_lc.melody import metrics
from melody_lc.melody.encoding import BAR_STEPS, NUM_PITCHES
from melody_lc.melody.pitches import (
    MODES,
    NAMES,
    pitch_name,
)
from melody_lc.rules import constraints, examples, form
from melody_lc.rules.args import bound_violation, bounds_words, parse_bounds, parse_pitch, parse_pitch_class
from melody_lc.rules.base import RuleKind
from melody_lc.rules.syntax import did_you_mean

PLUGIN_GROUP = "melody_lc.rules"
SUPPORTED_API_VERSIONS = (1, 2)  # 2 added the optional decode-time ``constraint`` hook


# --------------------------------------------------------------------------------------------------
# Built-in kinds
# --------------------------------------------------------------------------------------------------
class Key(RuleKind):
    name = "key"
    aliases = ("scale",)
    summary = "notes from a key or scale: 'C major', 'D dorian', '? major' (any tonic), 'pitch classes C D E G A'"
    scale = 0.05

    def parse(self, cur):
        if cur.accept("pitch", "pitches"):
            cur.accept("classes", "class")
            pcs = []
            while not cur.at_end():
                if cur.accept(","):
                    continue
                pcs.append(parse_pitch_class(cur))
            if not pcs:
                cur.fail("expected at least one pitch class after 'pitch classes'")
            return {"tonic": pcs[0], "mode": None, "pcs": sorted(set(pcs))}
        tonic = None if cur.accept("?") else parse_pitch_class(cur)
        words = []
        while not cur.at_end():
            words.append(cur.next("a mode"))
        mode = " ".join(t.text.lower() for t in words) or "major"
        if mode not in MODES:
            col = words[0].column if words else None
            cur.fail(
                f"unknown mode '{mode}'" + did_you_mean(mode, MODES) + f" (modes: {', '.join(sorted(set(MODES)))})", col
            )
        return {"tonic": tonic, "mode": mode, "pcs": list(MODES[mode])}

    def pitch_classes(self, params: dict, cond: dict, n: int) -> np.ndarray:
        """(n, 12) bool: the allowed pitch classes for each melody."""
        if params["mode"] is None:  # explicit pitch classes
            row = np.zeros(12, bool)
            row[params["pcs"]] = True
            return np.broadcast_to(row, (n, 12))
        tonic = self.tonic(params, cond, n)
        degrees = np.zeros(12, bool)
        degrees[list(params["pcs"])] = True
        return degrees[(np.arange(12)[None, :] - tonic[:, None]) % 12]

    @staticmethod
    def tonic(params: dict, cond: dict, n: int) -> np.ndarray:
        if params["tonic"] is None:
            return np.asarray(cond["tonic"], dtype=int)
        return np.full(n, params["tonic"])

    def violation(self, tokens, params, cond):
        allowed = self.pitch_classes(params, cond, len(tokens))
        is_note = tokens < NUM_PITCHES
        pc = np.where(is_note, tokens % 12, 0)
        ok = np.take_along_axis(allowed, pc.astype(int), axis=1) & is_note
        count = is_note.sum(1)
        outside = np.divide(count - ok.sum(1), count, out=np.ones(len(tokens)), where=count > 0)
        return outside

    def open_params(self, params):
        return {"tonic": ("category", 12)} if params["tonic"] is None and params["mode"] else {}

    def constraint(self, params, cond, n):
        return constraints.PitchClasses(self.pitch_classes(params, cond, n))

    def offending_notes(self, tokens, params, cond):
        allowed = self.pitch_classes(params, cond, len(tokens))
        is_note = tokens < NUM_PITCHES
        pc = np.where(is_note, tokens % 12, 0).astype(int)
        return is_note & ~np.take_along_axis(allowed, pc, axis=1)

    def describe(self, params):
        if params["mode"] is None:
            return "every note is one of the pitch classes " + ", ".join(NAMES[p] for p in params["pcs"])
        tonic = "any tonic (chosen when generating)" if params["tonic"] is None else NAMES[params["tonic"]]
        return (
            f"every note is in {tonic} {params['mode']}"
            if params["tonic"] is not None
            else f"every note is in the {params['mode']} scale on {tonic}"
        )


class Density(RuleKind):
    name = "density"
    aliases = ("notes-per-bar",)
    summary = "notes per bar: '>= 3 notes per bar', '2 .. 6 notes per bar', '<= 4 notes per bar on average', '>= ? notes per bar'"
    scale = 0.5
    OPEN_RANGE = (1.0, 8.0)

    def parse(self, cur):
        first = cur.i
        b = parse_bounds(cur, "a number of notes", allow_open=True)
        number_col = next((t.column for t in cur.tokens[first : cur.i] if t.text[0].isdigit()), None)
        cur.expect("notes", "note", what="'notes per bar'")
        cur.expect("per", what="'per bar'")
        cur.expect("bar", what="'bar'")
        average = bool(cur.accept("on"))
        if average:
            cur.expect("average", what="'average'")
        for v in (b["low"], b["high"]):
            if v is not None and v > 16:
                cur.fail(f"a bar has 16 steps: {v:g} notes per bar is impossible", number_col)
        return {**b, "average": average}

    def violation(self, tokens, params, cond):
        per_bar = metrics.notes_per_bar(tokens).astype(float)
        low, high = params["low"], params["high"]
        if params["open"]:
            target = np.asarray(cond["density"], dtype=float)[:, None]
            low, high = (target, None) if params["op"] == ">=" else (None, target)
        if params["average"]:
            return bound_violation(per_bar.mean(1, keepdims=True), low, high)[:, 0]
        return bound_violation(per_bar, low, high).mean(1)

    def open_params(self, params):
        return {"density": ("range", *self.OPEN_RANGE)} if params["open"] else {}

    def offending_notes(self, tokens, params, cond):
        """Every note of a bar with too many notes."""
        if params["average"]:
            return np.zeros(tokens.shape, bool)
        per_bar = metrics.notes_per_bar(tokens).astype(float)
        high = (
            np.asarray(cond["density"], float)[:, None] if params["open"] and params["op"] == "<=" else params["high"]
        )
        if params["open"] and params["op"] == ">=":
            high = None
        crowded = bound_violation(per_bar, None, high) > 1e-9 if high is not None else np.zeros(per_bar.shape, bool)
        return (tokens < NUM_PITCHES) & np.repeat(crowded, 16, axis=1)

    def constraint(self, params, cond, n):
        low, high = params["low"], params["high"]
        if params["open"]:
            target = np.asarray(cond["density"], dtype=float)
            low, high = (target, None) if params["op"] == ">=" else (None, target)
        per = 1 if not params["average"] else cond["_steps"] // BAR_STEPS  # on average: a bound on the note count

        def whole(v, f):
            return None if v is None else f(np.broadcast_to(np.asarray(v, dtype=float) * per, (n,)))

        return constraints.Onsets(
            whole(low, constraints.at_least), whole(high, constraints.at_most), per_bar=not params["average"]
        )

    def describe(self, params):
        where = "on average over the 16 bars" if params["average"] else "in every bar"
        if params["open"]:
            lo, hi = self.OPEN_RANGE
            side = "at least" if params["op"] == ">=" else "at most"
            return f"{side} N notes {where}, N chosen when generating ({lo:g} to {hi:g})"
        return f"{bounds_words(params['low'], params['high'], 'notes')} {where}"


class Range(RuleKind):
    name = "range"
    summary = "pitch range: 'C4 .. C6' (C4 is middle C, MIDI 60)"
    scale = 2.0

    def parse(self, cur):
        first = cur.peek()
        low = parse_pitch(cur)
        cur.expect("..", "to", what="'..'")
        high = parse_pitch(cur)
        if low > high:
            cur.fail(
                f"the range is empty: {pitch_name(low)} is above {pitch_name(high)}", first.column if first else None
            )
        return {"low": low, "high": high}

    def violation(self, tokens, params, cond):
        lo, hi = metrics.pitch_range(tokens)
        has = hi >= 0
        v = np.maximum(0, params["low"] - lo) + np.maximum(0, hi - params["high"])
        return np.where(has, v, 0).astype(float)

    def constraint(self, params, cond, n):
        return constraints.PitchRange(n, params["low"], params["high"])

    def offending_notes(self, tokens, params, cond):
        return (tokens < NUM_PITCHES) & ((tokens < params["low"]) | (tokens > params["high"]))

    def describe(self, params):
        return f"every note between {pitch_name(params['low'])} and {pitch_name(params['high'])}"


class _Bounded(RuleKind):
    """A kind that bounds one number measured on each melody: ``>= a``, ``<= b`` or ``a .. b``."""

    what = "a number"  # what the bound's number is, for error messages
    units: tuple[str, ...] = ()  # the word(s) that must follow the number, e.g. ("semitones", "semitone")
    label = ""  # the unit in descriptions
    percent = False

    def measure(self, tokens: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def phrase(self, bounds: str) -> str:
        return bounds

    def parse(self, cur):
        b = parse_bounds(cur, self.what, percent=self.percent)
        if self.units:
            cur.expect(*self.units, what=f"'{self.units[0]}'")
        if self.percent and any(v is not None and v > 1 for v in (b["low"], b["high"])):
            cur.fail("a share of the steps cannot exceed 100%")
        return b

    def violation(self, tokens, params, cond):
        return bound_violation(self.measure(tokens).astype(float), params["low"], params["high"])

    def describe(self, params):
        fmt = (lambda v: f"{v:.0%}") if self.percent else (lambda v: f"{v:g}")
        return self.phrase(bounds_words(params["low"], params["high"], self.label, fmt=fmt))


class Leap(_Bounded):
    name = "leap"
    summary = "largest interval between successive notes: '<= 7 semitones'"
    scale = 2.0
    what, units, label = "a number of semitones", ("semitones", "semitone"), "semitones"

    def measure(self, tokens):
        return metrics.largest_leap(tokens)

    def constraint(self, params, cond, n):
        return constraints.Leap(*constraints.whole_bounds(params["low"], params["high"]))

    def offending_notes(self, tokens, params, cond):
        """The notes reached by a leap wider than the bound."""
        out = np.zeros(tokens.shape, bool)
        if params["high"] is None:
            return out
        steps, mask = metrics.intervals(tokens)
        order = np.argsort(~(tokens < NUM_PITCHES), axis=-1, kind="stable")  # note positions in time order
        wide = mask & (np.abs(steps) > params["high"])
        rows, k = np.nonzero(wide)
        out[rows, order[rows, k + 1]] = True
        return out

    def phrase(self, bounds):
        return "the largest leap between successive notes is " + bounds


class Rests(_Bounded):
    name = "rests"
    summary = "share of silent steps: '<= 25%', '10% .. 30%'"
    scale = 0.05
    fit_version = 2  # 2: the mask paces the silence a lower bound needs by phrase (constraints.Silence)
    what, label, percent = "a percentage", "of the time", True

    def measure(self, tokens):
        return metrics.rest_fraction(tokens)

    def constraint(self, params, cond, n):
        return constraints.Silence(*constraints.silent_step_bounds(params["low"], params["high"], cond["_steps"]))

    def phrase(self, bounds):
        return "silence " + bounds


class Distinct(_Bounded):
    name = "distinct"
    aliases = ("pitches",)
    summary = "number of different pitches: '>= 5 pitches'"
    scale = 1.0
    what, units, label = "a number of pitches", ("pitches", "pitch", "notes"), "different pitches"

    def measure(self, tokens):
        return metrics.distinct_pitches(tokens)

    def constraint(self, params, cond, n):
        return constraints.DistinctPitches(*constraints.whole_bounds(params["low"], params["high"]))

    def phrase(self, bounds):
        return "uses " + bounds


class _Edge(RuleKind):
    """start / end: the first or last note on the tonic (of the key rule) or on a pitch class."""

    scale = 0.5
    which = 0  # index into the note order: 0 first, -1 last

    def parse(self, cur):
        cur.accept("on")
        if cur.accept("tonic", "the"):
            cur.accept("tonic")
            return {"pc": None}
        return {"pc": parse_pitch_class(cur)}

    def violation(self, tokens, params, cond):
        is_note = tokens < NUM_PITCHES
        n = len(tokens)
        idx = is_note.argmax(1) if self.which == 0 else tokens.shape[1] - 1 - is_note[:, ::-1].argmax(1)
        pc = tokens[np.arange(n), idx] % 12
        target = np.asarray(cond["_tonic"], dtype=int) if params["pc"] is None else np.full(n, params["pc"])
        dist = np.abs(pc - target) % 12
        dist = np.minimum(dist, 12 - dist) / 6.0  # circular distance in semitones, 0..1
        return np.where(is_note.any(1), dist, 1.0)

    def constraint(self, params, cond, n):
        target = np.asarray(cond["_tonic"], dtype=int) if params["pc"] is None else np.full(n, params["pc"])
        return constraints.Edge(target, first=self.which == 0)

    def offending_notes(self, tokens, params, cond):
        out = np.zeros(tokens.shape, bool)
        is_note = tokens < NUM_PITCHES
        rows = np.flatnonzero(is_note.any(1) & (self.violation(tokens, params, cond) > 1e-9))
        idx = is_note.argmax(1) if self.which == 0 else tokens.shape[1] - 1 - is_note[:, ::-1].argmax(1)
        out[rows, idx[rows]] = True
        return out

    def describe(self, params):
        where = "the tonic" if params["pc"] is None else NAMES[params["pc"]]
        return f"the {'first' if self.which == 0 else 'last'} note is {where}"


class Start(_Edge):
    name = "start"
    summary = "first note: 'on tonic' (needs a key rule) or 'on G'"
    which = 0


class End(_Edge):
    name = "end"
    summary = "last note: 'on tonic' (needs a key rule) or 'on C'"
    which = -1


BUILTIN_KINDS: tuple[RuleKind, ...] = (
    Key(),
    Density(),
    Range(),
    Leap(),
    Rests(),
    Distinct(),
    Start(),
    End(),
    *form.KINDS,
    *examples.KINDS,
)


def load_plugins() -> tuple[dict[str, RuleKind], list[tuple[str, str]]]:
    """Kinds from installed plugins, and (entry point, reason) for each that failed to load."""
    from importlib.metadata import entry_points

    kinds, failed = {}, []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
            kind = obj() if isinstance(obj, type) else obj
            if getattr(kind, "api_version", None) not in SUPPORTED_API_VERSIONS:
                raise TypeError(
                    f"plugin API version {getattr(kind, 'api_version', None)}, expected one of "
                    + ", ".join(map(str, SUPPORTED_API_VERSIONS))
                )
            if not kind.name or not callable(getattr(kind, "parse", None)):
                raise TypeError("a rule kind needs a name and a parse method")
            kinds[kind.name.lower()] = kind
        except Exception as e:  # a broken plugin must not break the language
            failed.append((f"{ep.name} = {ep.value}", f"{type(e).__name__}: {e}"))
    return kinds, failed


def registry() -> dict[str, RuleKind]:
    """Every kind by name and alias: built in first; plugins may not shadow them."""
    table: dict[str, RuleKind] = {}
    for k in BUILTIN_KINDS:
        table[k.name] = k
        for a in k.aliases:
            table[a] = k
    plugins, _ = load_plugins()
    for name, k in plugins.items():
        table.setdefault(name, k)
    return table
