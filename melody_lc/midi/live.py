"""The live engine: constrained phrases streamed to a MIDI port in tempo, and call and response.

    maker  = PhraseMaker(model, rules, fitted)             # melody_lc.midi.maker: walk -> actor -> decode
    engine = LiveEngine(maker, port, LiveConfig(bpm=100))
    engine.start(); ...; engine.stop()                      # stop always ends in panic

Threads: the clock thread sends (``schedule.run_clock``, or the input port's callback in follow
mode); a worker generates the next phrase ahead of time, so the clock thread never waits for torch.
Changes of rules, open parameters or temperature take effect from the next phrase that has not
started yet (a queued phrase is made again).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import mido
import numpy as np
import torch

from melody_lc.melody.encoding import BAR_STEPS, STEPS
from melody_lc.midi.maker import PhraseMaker
from melody_lc.midi.schedule import (
    PULSES_PER_PHRASE,
    PULSES_PER_QUARTER,
    PULSES_PER_STEP,
    Clock,
    Follower,
    Phrase,
    Tempo,
    Transport,
    quick_gil_handoff,
    quiet_gc,
    run_clock,
    set_thread_priority,
)


@dataclass
class LiveConfig:
    bpm: float = 120.0
    channel: int = 0
    velocity: int = 90
    clock: str = "internal"  # internal | send | follow
    phrases: int | None = None  # stop after this many (None: until stopped)
    lead: float = 0.05  # seconds from start to the first pulse
    pause_bars: float = 1.0  # call and response: this much silence ends a capture


@dataclass(eq=False)  # records are compared by identity (they hold arrays)
class PhraseRecord:
    index: int
    tokens: np.ndarray
    info: dict
    deadline: float | None = None  # when its first step was due (clock seconds)
    ready_at: float = 0.0
    margin: float | None = field(default=None)  # deadline - ready_at: how far ahead it was ready


class LiveEngine:
    """Streams phrases from ``maker`` to ``out`` (anything with ``send(msg)``)."""

    def __init__(
        self,
        maker: PhraseMaker,
        out,
        config: LiveConfig = LiveConfig(),
        clock: Clock | None = None,
        log: Callable[[str], None] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.maker, self.out, self.config = maker, out, config
        self.alive = alive  # False when the output port's peer has gone (checked about once a second)
        self.clock = clock or Clock()
        self.log = log or (lambda s: None)
        self.transport = Transport(self._send, self._next_phrase, config.channel, on_quiet=self._quiet)
        self.tempo = Tempo(config.bpm, 0.0)
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.error: str | None = None
        self.played: list[PhraseRecord] = []
        self.step_lateness: list[float] = []  # per sixteenth: seconds after its deadline that it was sent
        self.first_phrase_s = 0.0
        self._queue: dict[int, PhraseRecord] = {}
        self._wanted = 0  # the worker makes phrases up to this index
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.follower: Follower | None = None
        self.capture = Capture(self)
        self.started_at: float | None = None
        self.tempo_changes: list[tuple[int, float]] = [(0, config.bpm)]
        self._port_checked = time.monotonic()

    # -- sending -----------------------------------------------------------------------------------
    def _send(self, msg: mido.Message) -> None:
        try:
            self.out.send(msg)
        except Exception as e:  # noqa: BLE001 - a vanished port raises backend-specific errors
            self.fail(f"MIDI output failed: {e}")

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
            self.log(message)
        self.stop_event.set()

    # -- phrases -----------------------------------------------------------------------------------
    def _next_phrase(self, k: int) -> Phrase | None:
        """Called by the transport when phrase k's first step is due."""
        with self._cond:
            rec = self._queue.pop(k, None)
            self._wanted = max(self._wanted, k + 1)
            self._cond.notify_all()
        if rec is None:
            self.log(f"phrase {k} was not ready in time: silence instead")
            return None
        rec.deadline = self.tempo.time_of(k * PULSES_PER_PHRASE) if self.follower is None else self.clock.now()
        rec.margin = rec.deadline - rec.ready_at
        self.played.append(rec)
        if "section" in rec.info:  # a plan's phrases say where they stand
            self.log(f"phrase {k}: {rec.info['section']}")
        return Phrase.from_tokens(rec.tokens, self.config.channel, self.config.velocity, rec.info)

    def _make(self, k: int) -> None:
        pending = self.capture.take_response()
        tokens, info = self.maker.respond(pending, k) if pending is not None else self.maker.next(k)
        if info.get("unmet"):  # said plainly, in the log, the status file and the terminal UI
            self.log(
                f"phrase {k}: no {'answer' if pending is not None else 'phrase'} obeying every rule was found "
                f"(breaks {', '.join(info['unmet'])}); it plays marked as such"
            )
        rec = PhraseRecord(k, tokens, info, ready_at=self.clock.now())
        with self._cond:
            if k > self.transport.phrase_index:  # not started while we worked
                self._queue[k] = rec
            elif pending is not None:  # an answer that missed its phrase plays at the next one
                rec.index = self.transport.phrase_index + 1
                self._queue[rec.index] = rec

    def _worker(self) -> None:
        try:
            torch.set_num_threads(1)  # leave the other core to the clock and the MIDI system
            set_thread_priority(nice=5)
            while not self.stop_event.is_set():
                with self._cond:
                    k = self.transport.phrase_index + 1
                    while (
                        k in self._queue
                        and self._queue[k].info.get("version") == self.maker.version
                        and not self.capture.response_waiting()
                    ):
                        k += 1
                    if k > self._wanted or (self.config.phrases is not None and k >= self.config.phrases):
                        self._cond.wait(0.05)
                        continue
                self._make(k)
        except Exception as e:  # noqa: BLE001 - reported, and the stream stops with panic
            self.fail(f"phrase generation failed: {type(e).__name__}: {e}")

    def changed(self) -> None:
        """Wake the worker after a change (rules, values, a captured call)."""
        with self._cond:
            self._cond.notify_all()

    # -- running -----------------------------------------------------------------------------------
    def start(self, follow_input=None, tempo: Tempo | None = None) -> None:
        """Make the first phrase, then start the clock (or wait for the DAW's start in follow mode).
        ``tempo``: play on this (shared, already anchored) tempo, as chains of a rack do."""
        quick_gil_handoff()  # the clock thread gets the GIL back quickly from the worker
        self.started_at = self.clock.now()
        if 0 not in self._queue:  # a rack makes the first phrase before it sets the clock going
            self._make(0)
        self.first_phrase_s = self.clock.now() - self.started_at
        quiet_gc()
        workers = [threading.Thread(target=self._worker, name="melody-lc-phrases", daemon=True)]
        if self.config.clock == "follow":
            self.follower = Follower(self.transport, self.clock)
        else:
            self.tempo = tempo or Tempo(self.config.bpm, self.clock.now() + self.config.lead)
            workers.append(threading.Thread(target=self._clock, name="melody-lc-clock", daemon=True))
        self._threads = workers
        for t in workers:
            t.start()

    def _clock(self) -> None:
        until = None if self.config.phrases is None else self.config.phrases * PULSES_PER_PHRASE
        set_thread_priority(realtime=True)
        try:
            run_clock(
                self.transport,
                self.tempo,
                self.stop_event,
                self.clock,
                self.config.clock == "send",
                until,
                on_step_sent=lambda p, s: self.step_lateness.append(s),
            )
        except Exception as e:  # noqa: BLE001
            self.fail(f"clock failed: {type(e).__name__}: {e}")
        finally:
            self.done.set()

    def on_message(self, msg: mido.Message) -> None:
        """Messages from the input port: MIDI clock (follow mode) and the player's notes."""
        if msg.type in ("clock", "start", "stop", "continue", "songpos"):
            if self.follower is not None:
                self.follower(msg)
                if (
                    self.config.phrases is not None
                    and self.follower.position >= self.config.phrases * PULSES_PER_PHRASE
                ):
                    self.done.set()
        elif msg.type in ("note_on", "note_off"):
            self.capture.note(msg, self.position())

    def position(self) -> float:
        """Where the stream is now, in pulses (fractional between pulses)."""
        if self.follower is not None:
            return float(self.follower.position)
        return (self.clock.now() - self.tempo.t_anchor) / self.tempo.seconds_per_pulse + self.tempo.pulse_anchor

    def set_bpm(self, bpm: float) -> None:
        """A new tempo from the next pulse on (internal and send clocks)."""
        pulse = max(0, math.ceil(self.position()))
        self.tempo.change(bpm, pulse)
        self.tempo_changes.append((pulse, float(bpm)))

    def current(self) -> PhraseRecord | None:
        """The phrase now playing (None before the first or after a late one)."""
        with self._cond:
            rec = self.played[-1] if self.played else None
            return rec if rec is not None and rec.index == self.transport.phrase_index else None

    def upcoming(self) -> PhraseRecord | None:
        """The next phrase, once it is ready and still up to date."""
        with self._cond:
            rec = self._queue.get(self.transport.phrase_index + 1)
            return rec if rec is not None and rec.info.get("version") == self.maker.version else None

    def step(self) -> float:
        """Where the playhead is within the current phrase, in sixteenth steps (0..256)."""
        return max(0.0, self.position()) / PULSES_PER_STEP % STEPS

    def poll(self) -> None:
        """Call a few times a second: ends a capture at a pause or a phrase boundary."""
        self.capture.check_pause(self.position())

    def _quiet(self, pulse: int) -> None:
        """Mid-step, on the clock thread: about once a second, check that the output's peer is
        still there, and stop the stream (then panic) when it has gone. Half a step must leave room
        for notes in flight to land first (25 ms: tempos up to 300 bpm)."""
        now = time.monotonic()
        if self.alive is None or now - self._port_checked < 1.0:
            return
        if self.follower is None and self.tempo.seconds_per_pulse * PULSES_PER_STEP / 2 < 0.025:
            return
        self._port_checked = now
        if not self.alive():
            self.fail(f"the output port {getattr(self.out, 'name', '?')!r} has gone")

    def stop(self) -> None:
        """Stop and panic: every sounding note off, then All Notes Off and All Sound Off."""
        self.stop_event.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        self.transport.panic()
        self.done.set()
        quiet_gc(False)

    # -- figures -----------------------------------------------------------------------------------
    def recording(self) -> mido.MidiFile:
        """What was sent, as a type-0 .mid file (480 ticks per quarter, tempo changes included)."""
        ticks_per_pulse = 480 // PULSES_PER_QUARTER
        timed = [
            (p * ticks_per_pulse, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(b)))
            for p, b in self.tempo_changes
        ]
        timed += [(p * ticks_per_pulse, 1, m) for p, m in self.transport.sent]
        track = mido.MidiTrack()
        now = 0
        for tick, _, msg in sorted(timed, key=lambda x: (x[0], x[1])):
            track.append(msg.copy(time=tick - now))
            now = tick
        return mido.MidiFile(type=0, ticks_per_beat=480, tracks=[track])


class Capture:
    """Call and response: gathers the player's notes into a 16-bar phrase.

    A capture starts at the bar of the first note and ends at the first phrase boundary after it,
    or after ``pause_bars`` of silence, or at 16 bars. Monophonic: a new note ends the one sounding."""

    def __init__(self, engine: LiveEngine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.notes: list[list[int]] = []  # [pitch, start_step, end_step or -1]
        self.start_bar: int | None = None
        self.last_event_step = 0.0
        self._response: np.ndarray | None = None

    def note(self, msg: mido.Message, pulse: float) -> None:
        step = int(round(pulse / PULSES_PER_STEP))
        with self.lock:
            on = msg.type == "note_on" and msg.velocity > 0
            if self.notes and self.notes[-1][2] < 0 and (on or self.notes[-1][0] == msg.note):
                self.notes[-1][2] = max(step, self.notes[-1][1] + 1)
            if on:
                if self.start_bar is None:
                    self.start_bar = step // BAR_STEPS
                self.notes.append([msg.note, step, -1])
            self.last_event_step = pulse / PULSES_PER_STEP
        if self.start_bar is not None and step - self.start_bar * BAR_STEPS >= STEPS:
            self.finish(step)

    def check_pause(self, pulse: float) -> None:
        """Called now and then: ends a capture at a pause or at a phrase boundary."""
        step = pulse / PULSES_PER_STEP
        with self.lock:
            if self.start_bar is None:
                return
            sounding = bool(self.notes) and self.notes[-1][2] < 0
            paused = not sounding and step - self.last_event_step >= self.engine.config.pause_bars * BAR_STEPS
            boundary = int(step) // STEPS > (self.start_bar * BAR_STEPS) // STEPS and not sounding
        if paused or boundary:
            self.finish(int(step))

    def finish(self, step: int) -> None:
        from melody_lc.melody import Melody

        with self.lock:
            if self.start_bar is None:
                return
            origin = self.start_bar * BAR_STEPS
            notes = []
            for pitch, s, e in self.notes:
                e = step if e < 0 else e
                s, e = s - origin, min(e - origin, STEPS)
                if 0 <= s < STEPS and e > s:
                    notes.append((pitch, s, e))
            self.notes, self.start_bar = [], None
            if notes:
                self._response = Melody.from_notes(notes).tokens.astype(np.int64)
        if notes:
            self.engine.log(f"captured {len(notes)} notes: answering on the next phrase")
            self.engine.changed()

    def response_waiting(self) -> bool:
        return self._response is not None

    def take_response(self) -> np.ndarray | None:
        with self.lock:
            r, self._response = self._response, None
            return r


def wait_for_follow_start(engine: LiveEngine, timeout: float | None = None) -> bool:
    """In follow mode: True once the DAW has sent start (or continue)."""
    t0 = time.monotonic()
    while not (engine.follower and engine.follower.playing):
        if engine.stop_event.is_set() or (timeout is not None and time.monotonic() - t0 > timeout):
            return False
        time.sleep(0.01)
    return True
