"""The ``constrain`` transform: each 16-bar phrase played into it comes out one phrase later,
moved toward a rules file by the latent gradient search (the identity-preserving transformation),
on a search thread of its own."""

from __future__ import annotations

import logging
import threading

import numpy as np

from melody_lc.chain.api import Context, Event, Param, Processor

log = logging.getLogger(__name__)


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

    def __init__(self, resources=None, open_values: dict | None = None, **values) -> None:
        super().__init__(**values)
        # (rules, model, fitted), which the host loads (and fits, if need be) before it runs
        self.rules, self.model, self.fitted = (resources or (None, None, None))[:3]
        self.open_values = open_values  # the rules' open parameters, by name
        self.notes: list[list] = []  # [pitch, start_beat, end_beat or None, channel]
        self.phrase: int | None = None
        self.pending: list[Event] = []
        self.lock = threading.Lock()
        self.results: list[tuple[int, np.ndarray, int]] = []  # (phrase to play in, tokens, channel)
        self.waiting: tuple | None = None  # the latest phrase to search for (an older one left waiting is dropped)
        # the one search thread (searches never compete for the CPU); it lives only while there is
        # work, so an idle processor never keeps the process from exiting
        self.worker: threading.Thread | None = None
        self.warmed = False
        self.closed = False
        if self.model is not None:
            self._start_worker()  # it warms up while the first phrase plays

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
        with self.lock:
            if self.closed:
                return
            if self.waiting is not None:  # its answer would come too late to be heard: the newer phrase wins
                dropped = self.waiting[0] - 1
                log.warning(
                    "constrain: phrase %d ended before phrase %d was searched; that one stays unanswered", k, dropped
                )
            self.waiting = (k + 1, tokens, channel)
        self._start_worker()

    def _start_worker(self) -> None:
        with self.lock:
            if self.worker is None and not self.closed:
                # not a daemon: torch must never be cut off mid-call at exit (that aborts the process)
                self.worker = threading.Thread(target=self._work, name="melody-lc-constrain")
                self.worker.start()

    def _work(self) -> None:
        """The search thread: first a search to warm up (the first calls of torch's kernels, and the
        imports, take seconds), then the phrases waiting, one at a time; it ends when none waits."""
        from melody_lc.constrain import transform
        from melody_lc.melody.encoding import REST, STEPS

        job = None if not self.warmed else self._next_job()
        while job is not False:
            try:
                if job is None:
                    silence = np.full(STEPS, REST, dtype=np.int64)
                    transform(silence, self.rules, self.model, self.fitted, values=self.open_values, steps=2)
                    self.warmed = True
                else:
                    self._search(*job)
            except Exception as e:  # a thread of its own: said, and the next phrase is searched for
                log.warning(
                    "constrain: the search for phrase %s failed: %s", "(warm-up)" if job is None else job[0] - 1, e
                )
            job = self._next_job()

    def _next_job(self):
        """The phrase waiting, or False (then this thread ends: none waits, or the processor closed)."""
        with self.lock:
            if self.waiting is None or self.closed:
                self.worker = None
                return False
            job, self.waiting = self.waiting, None
            return job

    def _search(self, k: int, tokens: np.ndarray, channel: int) -> None:
        from melody_lc.constrain import transform

        out, report = transform(
            tokens, self.rules, self.model, self.fitted, values=self.open_values, steps=self.values["steps"]
        )
        if not report["all_rules"]:  # never played: an answer must obey every rule
            broken = [name for name, r in report["rules"].items() if not r["satisfied"]]
            log.warning(
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
        skipped = 0
        for step in sorted(phrase.events):
            t = ctx.time_at(k * self.PHRASE_BEATS + step / 4)
            if t >= ctx.now or step == 256:
                self.pending += [Event(max(t, ctx.now), m) for m in phrase.events[step]]
            else:  # notes of a phrase that started before its search ended are skipped, not played late
                skipped += sum(m.type == "note_on" and m.velocity > 0 for m in phrase.events[step])
        if skipped:
            late = ctx.now - ctx.time_at(k * self.PHRASE_BEATS)
            log.warning(
                "constrain: the answer to phrase %d came %.1f s late; its first %d notes are skipped",
                k - 1,
                late,
                skipped,
            )

    def reset(self) -> None:
        """Notes in flight are forgotten; an answer still being searched for plays when it is ready."""
        self.notes, self.phrase, self.pending = [], None, []

    def close(self) -> None:
        """No search starts after this; the one under way is waited for (a search is bounded by its
        steps and redraws: seconds)."""
        with self.lock:
            self.closed, self.waiting = True, None
            worker = self.worker
        if worker is not None:
            worker.join()
