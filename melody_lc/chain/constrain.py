"""The ``constrain`` transform: each 16-bar phrase played into it comes out one phrase later,
moved toward a rules file by the latent gradient search (the identity-preserving transformation),
on a search thread of its own."""

from __future__ import annotations

import logging
import threading

import numpy as np

from melody_lc.chain.api import Context, Event, Param, Processor


class Constrain(Processor):
    """Gathers the notes played into it, one 16-bar phrase at a time (phrases start on multiples of
    16 bars from the stream's start), and plays each phrase moved toward the rules by the latent
    gradient search (the identity-preserving transformation) during the next phrase. The search
    runs on a thread of its own; the processor itself only gathers and releases notes."""

    name = "constrain"
    summary = (
        "plays each 16-bar phrase moved toward a rules file (latent gradient search), one phrase later; "
        "the rules' open parameters are set by name, e.g. tonic=G"
    )
    open_params = True  # also takes the open parameters of its rules file, by name (all of them)
    params = (
        Param("rules", "path", help="the rules file"),
        Param("dry", "bool", False, help="also pass the notes played through"),
        Param("velocity", "int", 90, min=1, max=127),
        Param("steps", "int", 300, min=1, max=5000, help="gradient search steps"),
    )
    budget = 0.02

    def __init__(self, resources=None, **values) -> None:
        super().__init__(**values)
        # (rules, model, fitted), which the host loads (and fits, if need be) before it runs
        self.rules, self.model, self.fitted = resources or (None, None, None)
        self.open_values: dict | None = None  # the rules' open parameters (the host sets them)
        self.notes: list[list] = []  # [pitch, start_beat, end_beat or None, channel]
        self.phrase: int | None = None
        self.pending: list[Event] = []
        self.lock = threading.Lock()
        self.results: list[tuple[int, np.ndarray, int]] = []  # (phrase to play in, tokens, channel)
        self.searches: list[threading.Thread] = []
        self.closed = False

    PHRASE_BEATS = 64

    def process(self, events, ctx):
        out = [e for e in events if not e.is_note] + ([e for e in events if e.is_note] if self.values["dry"] else [])
        for e in events:
            beat = ctx.beat_at(e.time)
            if (
                self.notes
                and self.notes[-1][2] is None
                and (e.is_note_on or (e.is_note_off and e.msg.note == self.notes[-1][0]))
            ):
                self.notes[-1][2] = beat
            if e.is_note_on:
                if self.phrase is None:
                    self.phrase = int(beat // self.PHRASE_BEATS)
                self.notes.append([e.msg.note, beat, None, e.msg.channel])
        now_phrase = int(ctx.beat // self.PHRASE_BEATS)
        if self.phrase is not None and now_phrase > self.phrase:
            self._submit(self.phrase, ctx)
        with self.lock:
            for k, tokens, channel in self.results:
                self._schedule(k, tokens, channel, ctx)
            self.results = []
        due = [p for p in self.pending if p.time <= ctx.now + ctx.horizon]
        self.pending = [p for p in self.pending if p.time > ctx.now + ctx.horizon]
        return out + due

    def _submit(self, k: int, ctx: Context) -> None:
        from melody_lc.melody import Melody

        origin = k * self.PHRASE_BEATS
        notes, channel = [], 0
        for pitch, s, e, ch in self.notes:
            e = (k + 1) * self.PHRASE_BEATS if e is None else e
            s0, e0 = round((s - origin) * 4), min(256, round((e - origin) * 4))
            if 0 <= s0 < 256 and e0 > s0:
                notes.append((pitch, s0, e0))
                channel = ch
        self.notes, self.phrase = [], None
        if not notes:
            return
        tokens = Melody.from_notes(notes).tokens.astype(np.int64)
        # not a daemon: torch must never be cut off mid-call at exit (that aborts the process)
        search = threading.Thread(target=self._search, args=(k + 1, tokens, channel), name="melody-lc-constrain")
        with self.lock:
            if self.closed:
                return
            self.searches = [s for s in self.searches if s.is_alive()] + [search]
            search.start()

    def _search(self, k: int, tokens: np.ndarray, channel: int) -> None:
        from melody_lc.constrain import transform

        out, report = transform(
            tokens, self.rules, self.model, self.fitted, values=self.open_values, steps=self.values["steps"]
        )
        if not report["all_rules"]:  # never played: an answer must obey every rule
            broken = [name for name, r in report["rules"].items() if not r["satisfied"]]
            logging.getLogger(__name__).warning(
                "constrain: no answer to phrase %d obeys every rule (breaks %s); that phrase stays silent",
                k - 1,
                ", ".join(broken),
            )
            return
        with self.lock:
            self.results.append((k, out[0], channel))

    def _schedule(self, k: int, tokens, channel: int, ctx: Context) -> None:
        from melody_lc.midi.schedule import Phrase

        phrase = Phrase.from_tokens(tokens, channel, self.values["velocity"])
        for step in sorted(phrase.events):
            t = ctx.time_at(k * self.PHRASE_BEATS + step / 4)
            if t >= ctx.now or step == 256:
                self.pending += [Event(max(t, ctx.now), m) for m in phrase.events[step]]
            # notes of a phrase that started before its search ended are skipped, not played late

    def reset(self) -> None:
        """Notes in flight are forgotten; an answer still being searched for plays when it is ready."""
        self.notes, self.phrase, self.pending = [], None, []

    def close(self) -> None:
        """No search starts after this; the ones under way are waited for (a search is bounded by
        its steps and redraws: seconds)."""
        with self.lock:
            self.closed = True
            searches = list(self.searches)
        for search in searches:
            search.join()
