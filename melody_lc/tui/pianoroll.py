"""The piano roll of the live screen: a phrase as rows of pitches and columns of sixteenths."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from melody_lc.melody import metrics
from melody_lc.melody.encoding import BAR_STEPS, NUM_PITCHES, STEPS
from melody_lc.melody.pitches import pitch_name


def pitch_per_step(tokens) -> tuple[np.ndarray, np.ndarray]:
    """(pitch (256,) with -1 where silent, onset (256,) bool) of a token string."""
    t = np.asarray(tokens, dtype=np.int64)
    return metrics.sounding_pitch(t).astype(np.int64), t < NUM_PITCHES


def roll_rows(pitches: np.ndarray, height: int) -> list[np.ndarray]:
    """The pitches of each piano-roll row, top row first, for a phrase sounding ``pitches``.

    A row per semitone from the lowest to the highest pitch when they fit in ``height`` rows;
    otherwise a row per pitch the phrase uses (so no row stands for a pitch it never plays), and
    when even those do not fit, neighbouring used pitches share a row."""
    lo, hi = int(pitches.min()), int(pitches.max())
    if hi - lo + 1 <= height:
        return [np.array([p]) for p in range(hi, lo - 1, -1)]
    used = np.unique(pitches)[::-1]
    return np.array_split(used, min(len(used), max(1, height)))


def row_label(row: np.ndarray) -> str:
    """``G4`` for a row of one pitch, ``F4-G4`` for a row of several (lowest-highest)."""
    return pitch_name(int(row[0])) if len(row) == 1 else f"{pitch_name(int(row[-1]))}-{pitch_name(int(row[0]))}"


def chord_line(chords, ncols: int) -> str:
    """The chord symbols over ``ncols`` columns, each where its half bar begins, written when the
    chord changes (a symbol that would run into the next one is cut short)."""
    line = [" "] * ncols
    half = STEPS // len(chords)
    previous = None
    for k, symbol in enumerate(chords):
        if symbol is not None and symbol != previous:
            start = k * half * ncols // STEPS
            nxt = next((j for j in range(k + 1, len(chords)) if chords[j] != symbol), len(chords))
            room = max(1, nxt * half * ncols // STEPS - start - 1)
            for i, ch in enumerate(symbol[:room]):
                if start + i < ncols:
                    line[start + i] = ch
        previous = symbol
    return "".join(line)


class PianoRoll(Widget):
    """A phrase as a piano roll: a row per pitch (see :func:`roll_rows`; each row is labelled with
    the pitches it holds), a column per one or more sixteenths, bar lines, and the playhead."""

    tokens: reactive[tuple | None] = reactive(None)
    playhead: reactive[int | None] = reactive(None)  # the step now playing, or None
    chords: reactive[tuple | None] = reactive(None)  # the rules' chord per half bar: a line of symbols on top

    def __init__(self, empty: str = "", **kw) -> None:
        super().__init__(**kw)
        self.empty = empty

    def render(self) -> Text:
        if self.tokens is None:
            return Text(self.empty, style="dim italic")
        pitch, onset = pitch_per_step(self.tokens)
        sounding = pitch[pitch >= 0]
        if not len(sounding):
            return Text("(a silent phrase)", style="dim italic")
        chords = self.chords if self.chords and any(self.chords) else None
        rows = roll_rows(sounding, max(1, self.size.height - (chords is not None)))
        labels = [row_label(r) for r in rows]
        label_w = max(len(x) for x in labels) + 1
        ncols = int(np.clip(self.size.width - label_w, 16, STEPS))
        col = np.arange(STEPS) * ncols // STEPS  # the column of each step
        starts = np.flatnonzero(np.diff(col, prepend=-1))  # each column's first step
        bar_cols = set((np.arange(0, STEPS, BAR_STEPS) * ncols // STEPS).tolist())
        head = None if self.playhead is None else int(col[min(STEPS - 1, int(self.playhead))])
        text = Text(no_wrap=True, overflow="crop")
        if chords is not None:
            text.append(" " * label_w + chord_line(chords, ncols) + "\n", style="bold cyan")
        for row, label in zip(rows, labels):
            inside = np.isin(pitch, row)
            on = np.logical_or.reduceat(inside & onset, starts)
            held = np.logical_or.reduceat(inside, starts)
            text.append(f"{label:>{label_w - 1}} ", style="dim")
            for c in range(ncols):
                bar_line = c in bar_cols
                if on[c]:
                    ch, style = "█", "bold green"
                elif held[c]:
                    ch, style = "▬", "green"
                else:
                    ch, style = ("┊" if bar_line else " "), "grey37"
                if c == head:
                    style += " on grey30"
                text.append(ch, style=style)
            text.append("\n")
        text.rstrip()
        return text
