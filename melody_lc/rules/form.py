"""Rule kinds in the terms of form and harmony: chords, the climax, and the form (repeated phrases).

    chords: C | Am | F | G7 | C | Am | Dm G | C    # one chord per bar, or two (beats 1-2, beats 3-4)
    climax: in bars 9-12                           # the highest note of the melody lies there
    form: A A B A                                  # 4-bar phrases; the same letter, the same notes
    form: A A' B A                                 # a primed letter: the same onsets, pitches free

Each has an exact test, a graded reward, and a decode-time constraint (rules.constraints) that keeps
the test: chord tones on beats 1 and 3, a highest note placed in its bars, phrases copied.
"""

from __future__ import annotations

import re

import numpy as np

from melody_lc.melody.encoding import BAR_STEPS, NUM_BARS, NUM_PITCHES, STEPS
from melody_lc.melody.pitches import CHORD_EXAMPLE, CHORD_QUALITIES, chord
from melody_lc.rules import constraints
from melody_lc.rules.base import RuleKind
from melody_lc.rules.syntax import Cursor, did_you_mean, parse_span

HALF_BAR = BAR_STEPS // 2  # chords change on beat 1 or beat 3


def _whole_counts(total: int) -> str:
    """'2, 4, 8 or 16': the phrase counts a form may have (one phrase says nothing)."""
    counts = [str(k) for k in range(2, total + 1) if total % k == 0]
    return ", ".join(counts[:-1]) + " or " + counts[-1]


class Chords(RuleKind):
    name = "chords"
    aliases = ("chord",)
    summary = "a chord per bar (or two): 'C | Am | F | G7'; notes on beats 1 and 3 are chord tones"
    scale = 0.1
    mask_scale = 4.0

    def parse(self, cur: Cursor) -> dict:
        bars: list[list[str]] = [[]]
        while not cur.at_end():
            tok = cur.next(CHORD_EXAMPLE)
            column = tok.column
            for part in re.split(r"(\|)", tok.text):
                if part == "|":
                    if bars != [[]]:  # a leading '|' opens the first bar
                        bars.append([])
                elif part == "%":  # a lead sheet's repeat sign: the previous bar's chords again
                    if len(bars) < 2 or not bars[-2]:
                        cur.fail("'%' repeats the previous bar's chords, and there is none", column)
                    bars[-1].extend(bars[-2])
                elif part:
                    self._check_symbol(cur, part, column)
                    bars[-1].append(part)
                column += len(part)
        if len(bars) > 1 and not bars[-1]:  # a closing '|'
            bars.pop()
        for k, b in enumerate(bars):
            if not b:
                cur.fail(f"bar {k + 1} of the progression has no chord (expected {CHORD_EXAMPLE})")
            if len(b) > 2:
                cur.fail(f"bar {k + 1} has {len(b)} chords: at most two (beats 1-2 and beats 3-4)")
        if len(bars) > NUM_BARS:
            cur.fail(f"{len(bars)} bars of chords: a melody has {NUM_BARS}")
        return {"bars": [list(b) for b in bars]}

    @staticmethod
    def _check_symbol(cur: Cursor, text: str, column: int) -> None:
        try:
            known = chord(text)
        except KeyError as e:
            quality = str(e.args[0])
            cur.fail(
                f"unknown chord quality '{quality}' in '{text}'"
                + did_you_mean(quality, CHORD_QUALITIES)
                + f" (expected {CHORD_EXAMPLE})",
                column,
            )
        if known is None:
            cur.fail(f"expected {CHORD_EXAMPLE}, found '{text}'", column)

    def halves(self, params: dict, steps: int) -> list[str]:
        """The chord sounding in each half bar of ``steps`` steps (the progression repeats)."""
        per_bar = [b if len(b) == 2 else b * 2 for b in params["bars"]]
        bars = steps // BAR_STEPS
        return [per_bar[k % len(per_bar)][h] for k in range(bars) for h in (0, 1)]

    def tones(self, params: dict, steps: int) -> np.ndarray:
        """(halves, 12) bool: the chord tones of each half bar."""
        out = np.zeros((steps // HALF_BAR, 12), bool)
        for k, symbol in enumerate(self.halves(params, steps)):
            out[k, list(chord(symbol)[1])] = True
        return out

    def _strong(self, tokens, params):
        """(strong-beat note-ons, of them those off the chord), each (N, steps) bool."""
        steps = tokens.shape[1]
        strong = np.zeros(steps, bool)
        strong[::HALF_BAR] = True
        on = (tokens < NUM_PITCHES) & strong
        allowed = np.repeat(self.tones(params, steps), HALF_BAR, axis=0)  # (steps, 12)
        pc = np.where(on, tokens % 12, 0)
        return on, on & ~allowed[np.arange(steps)[None, :], pc]

    def violation(self, tokens, params, cond):
        on, off = self._strong(tokens, params)
        count = on.sum(1)
        return np.divide(off.sum(1), count, out=np.zeros(len(tokens)), where=count > 0)

    def offending_notes(self, tokens, params, cond):
        return self._strong(tokens, params)[1]

    def constraint(self, params, cond, n):
        return constraints.ChordTones(n, self.tones(params, cond["_steps"]))

    def describe(self, params):
        progression = " | ".join(" ".join(b) for b in params["bars"])
        bars = len(params["bars"])
        again = "" if bars == NUM_BARS else f" ({bars} bar{'s' if bars > 1 else ''}, repeated to fill the bars)"
        return f"every note on beat 1 or 3 is a tone of the chord then sounding: {progression}{again}"


class Climax(RuleKind):
    name = "climax"
    aliases = ("peak",)
    summary = "where the highest note lies: 'in bars 9-12', 'in bar 12'"
    scale = 2.0
    names_bars = True  # its bars are the melody's: it cannot be scoped
    needs_ceiling = True  # its constraint gets cond["_ceiling"] (the highest pitch the key and range
    # allow) and cond["_bar_source"] (the bars a form copies: the climax comes in a bar of its own)

    def parse(self, cur: Cursor) -> dict:
        cur.accept("in")
        cur.expect("bars", "bar", what="'bars' (as in 'climax: in bars 9-12')")
        start = cur.peek()
        parts = []
        while not cur.at_end():
            parts.append(cur.next("bars").text)
        if start is None:
            cur.fail("expected bars such as '9-12' or '12'")
        first, last = parse_span(" ".join(parts).replace(" ", ""), cur.path, cur.line, start.column)
        if first == 0 and last == NUM_BARS - 1:
            cur.fail("the climax would lie anywhere: name fewer bars than all 16", start.column)
        return {"first": first, "last": last}

    def _split(self, tokens, params):
        is_note = tokens < NUM_PITCHES
        inside = np.zeros(tokens.shape[1], bool)
        inside[params["first"] * BAR_STEPS : (params["last"] + 1) * BAR_STEPS] = True
        pitch = np.where(is_note, tokens, -1)
        return np.where(inside, pitch, -1).max(1), np.where(~inside, pitch, -1).max(1), inside

    def violation(self, tokens, params, cond):
        top_in, top_out, _ = self._split(tokens, params)
        return np.where(top_in < 0, 12.0, np.maximum(0, top_out - top_in + 1)).astype(float)

    def offending_notes(self, tokens, params, cond):
        top_in, _, inside = self._split(tokens, params)
        return (tokens < NUM_PITCHES) & ~inside[None, :] & (tokens >= top_in[:, None])

    def constraint(self, params, cond, n):
        first, end = params["first"] * BAR_STEPS, (params["last"] + 1) * BAR_STEPS
        source = cond.get("_bar_source") or list(range(NUM_BARS))
        own = [b for b in range(params["first"], params["last"] + 1) if source[b] == b]  # bars not copied
        last = (own[-1] + 1) * BAR_STEPS - 1 if own else end - 1
        return constraints.Climax(n, first, end, cond.get("_ceiling"), last)

    def describe(self, params):
        first, last = params["first"] + 1, params["last"] + 1
        where = f"bar {first}" if first == last else f"bars {first}-{last}"
        return f"the highest note lies in {where}, and every note outside is lower"


_LABEL = re.compile(r"[A-Za-z]'*$")


class Form(RuleKind):
    name = "form"
    summary = "repeated phrases: 'A A B A' (4-bar phrases; the same letter, the same notes), 'A A' B A' (primed: the same onsets)"
    scale = 0.1
    mask_scale = 16.0  # a repeat is copied step by step: dozens of interventions, not a few
    slow_fit = True  # the actor's interventions still fall after round 6 (benchmarks/fit_rounds.py)
    names_bars = True

    def parse(self, cur: Cursor) -> dict:
        labels, first = [], cur.peek()
        while not cur.at_end():
            tok = cur.next("a phrase letter")
            if not _LABEL.match(tok.text):
                cur.fail(f"expected a phrase letter such as A, B or A' (primed), found '{tok.text}'", tok.column)
            labels.append(tok.text[0].upper() + tok.text[1:])
        if NUM_BARS % max(len(labels), 1) or not labels:
            cur.fail(
                f"{len(labels)} phrases do not divide {NUM_BARS} bars: give {_whole_counts(NUM_BARS)} letters",
                first.column if first else None,
            )
        if len(labels) == 1:
            cur.fail(f"a form of one phrase says nothing: give {_whole_counts(NUM_BARS)} letters", first.column)
        return {"labels": labels}

    @staticmethod
    def plan(labels: list[str]) -> tuple[list, list, list]:
        """Per phrase: the earlier phrase it copies (same label), else the earlier one whose onsets
        it shares (same letter), and the earlier phrases of other letters it must differ from."""
        copy, rhythm, differ = [], [], []
        for j, lab in enumerate(labels):
            copy.append(next((k for k in range(j) if labels[k] == lab), None))
            rhythm.append(next((k for k in range(j) if labels[k][0] == lab[0]), None))
            differ.append([k for k in range(j) if labels[k][0] != lab[0]])
        return copy, rhythm, differ

    @staticmethod
    def copies(labels: list[str], bar: int) -> list[int]:
        """The bars (0-based) that repeat ``bar`` note for note, itself included."""
        per = NUM_BARS // len(labels)
        j, offset = divmod(bar, per)
        return [k * per + offset for k, lab in enumerate(labels) if lab == labels[j]]

    def _pairs(self, tokens, params) -> np.ndarray:
        """(N, pairs): how far each constrained pair of phrases is from what the form asks, 0 when
        it holds: for a repeat, the share of its steps that differ; for a primed letter, the share
        of steps whose onset differs; for different letters, 1 when the phrases are identical."""
        labels = params["labels"]
        length = tokens.shape[1] // len(labels)
        phrases = tokens.reshape(len(tokens), len(labels), length)
        on = phrases < NUM_PITCHES
        cols = []
        for j in range(len(labels)):
            for k in range(j):
                if labels[k] == labels[j]:
                    cols.append((phrases[:, j] != phrases[:, k]).mean(1))
                elif labels[k][0] == labels[j][0]:
                    cols.append((on[:, j] != on[:, k]).mean(1))
                else:
                    cols.append((phrases[:, j] == phrases[:, k]).all(1).astype(float))
        return np.stack(cols, 1)

    def violation(self, tokens, params, cond):
        return self._pairs(tokens, params).mean(1)

    def offending_notes(self, tokens, params, cond):
        """The notes of a phrase that differ from the phrase it should repeat."""
        labels = params["labels"]
        length = tokens.shape[1] // len(labels)
        copy, rhythm, _ = self.plan(labels)
        out = np.zeros(tokens.shape, bool)
        for j, (c, r) in enumerate(zip(copy, rhythm)):
            here = tokens[:, j * length : (j + 1) * length]
            if c is not None:
                wrong = here != tokens[:, c * length : (c + 1) * length]
            elif r is not None:
                wrong = (here < NUM_PITCHES) != (tokens[:, r * length : (r + 1) * length] < NUM_PITCHES)
            else:
                continue
            out[:, j * length : (j + 1) * length] = wrong & (here < NUM_PITCHES)
        return out

    def constraint(self, params, cond, n):
        return constraints.Form(STEPS // len(params["labels"]), *self.plan(params["labels"]))

    def describe(self, params):
        labels = params["labels"]
        bars = NUM_BARS // len(labels)
        words = [f"{len(labels)} phrases of {bars} bar{'s' if bars > 1 else ''}: {' '.join(labels)}"]
        if any(labels[k] == lab for j, lab in enumerate(labels) for k in range(j)):
            words.append("a repeated letter repeats the phrase note for note")
        if any("'" in lab for lab in labels):
            words.append("a primed letter keeps the rhythm (the onsets) of its letter, with pitches free")
        if len({lab[0] for lab in labels}) > 1:
            words.append("phrases of different letters differ")
        return "; ".join(words)


KINDS: tuple[RuleKind, ...] = (Chords(), Climax(), Form())


def chord_halves(rules) -> list[str | None]:
    """The chord of each of the melody's 32 half bars from the rules' chords rules (None where
    none sounds), for writing a chord track and drawing chord symbols."""
    out: list[str | None] = [None] * (STEPS // HALF_BAR)
    for r in rules.rules:
        if isinstance(r.kind, Chords):
            first, last = r.scope if r.scope is not None else (0, NUM_BARS - 1)
            steps = (last - first + 1) * BAR_STEPS
            out[first * 2 : (last + 1) * 2] = r.kind.halves(r.params, steps)
    return out
