"""Playing phrases in tempo: an absolute clock, MIDI clock pulses, and no hanging notes.

Time is counted in MIDI clock pulses (24 per quarter note, 6 per sixteenth step). A phrase is one
16-bar melody, 256 steps; phrase k starts at step 256 * k. Every pulse has an absolute deadline

    t(pulse) = t_anchor + (pulse - pulse_anchor) * seconds_per_pulse

so lateness never accumulates (no sleep-and-drift); a tempo change re-anchors at the current pulse.

:class:`Transport` holds the musical state and sends what is due at a pulse; it does not know
where pulses come from. Two drivers feed it:
  :func:`run_clock`   our own clock (``internal``; ``send`` also emits clock, start and stop), and
  :class:`Follower`   the MIDI clock of a DAW (``follow``): start, stop, continue, song position.
Both take an injectable :class:`Clock`, so the logic is tested without ports or waiting.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import mido

from melody_lc.melody.encoding import HOLD, NUM_PITCHES, STEPS

PULSES_PER_QUARTER = 24
PULSES_PER_STEP = 6
PULSES_PER_PHRASE = STEPS * PULSES_PER_STEP


class Clock:
    """The system's monotonic clock; ``sleep_until`` sleeps most of the way, then spins the last
    half millisecond, because a plain sleep can wake a few hundred microseconds late."""

    spin = 0.0005

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        while True:
            left = t - time.monotonic()
            if left <= 0:
                return
            time.sleep(left - self.spin if left > self.spin else 0)


class FakeClock(Clock):
    """A clock for tests: sleeping jumps straight to the deadline."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)


@dataclass
class Phrase:
    """One phrase ready to play: its tokens and, per step, the messages to send (note-offs first).
    ``events[256]`` holds the note-offs of notes that last to the phrase's end."""

    tokens: object
    events: dict[int, list[mido.Message]]
    info: dict = field(default_factory=dict)

    @classmethod
    def from_tokens(cls, tokens, channel: int = 0, velocity: int = 90, info: dict | None = None) -> Phrase:
        events: dict[int, list[mido.Message]] = {}
        t = [int(x) for x in tokens]
        pitch = None
        for s in range(STEPS + 1):
            tok = t[s] if s < STEPS else 129
            if tok == HOLD:
                continue
            if pitch is not None:  # a note-on or a rest ends the sounding note
                events.setdefault(s, []).append(mido.Message("note_off", channel=channel, note=pitch, velocity=0))
                pitch = None
            if tok < NUM_PITCHES:
                events.setdefault(s, []).append(mido.Message("note_on", channel=channel, note=tok, velocity=velocity))
                pitch = tok
        return cls(tokens, events, info or {})


class Tempo:
    """Pulse deadlines on an absolute clock; changing the tempo re-anchors at a pulse."""

    def __init__(self, bpm: float, t0: float, pulse0: int = 0) -> None:
        self.bpm, self.t_anchor, self.pulse_anchor = float(bpm), t0, pulse0

    @property
    def seconds_per_pulse(self) -> float:
        return 60.0 / self.bpm / PULSES_PER_QUARTER

    def time_of(self, pulse: int) -> float:
        return self.t_anchor + (pulse - self.pulse_anchor) * self.seconds_per_pulse

    def change(self, bpm: float, at_pulse: int) -> None:
        self.t_anchor, self.pulse_anchor, self.bpm = self.time_of(at_pulse), at_pulse, float(bpm)


class Transport:
    """What sounds when. ``next_phrase(k)`` supplies phrase k when its first step is due (it must be
    ready by then; a phrase that is not ready is skipped and counted late). Every message goes
    through ``send``; sounding notes are tracked so that :meth:`panic` can end them all."""

    def __init__(
        self,
        send: Callable[[mido.Message], None],
        next_phrase: Callable[[int], Phrase | None],
        channel: int = 0,
        on_step: Callable[[int, int], None] | None = None,
        on_quiet: Callable[[int], None] | None = None,
    ) -> None:
        self._send, self.next_phrase, self.channel, self.on_step = send, next_phrase, channel, on_step
        self.on_quiet = on_quiet  # called mid-step (pulse 3 of 6), the farthest from any note
        self.lock = threading.RLock()
        self.sounding: set[tuple[int, int]] = set()
        self.current: Phrase | None = None
        self.phrase_index = -1
        self.sent: list[tuple[int, mido.Message]] = []  # (pulse, message) of every note message
        self.late_phrases = 0
        self.last_pulse = 0
        self.closed = False  # after panic nothing more is sent

    def send(self, msg: mido.Message, pulse: int | None = None) -> None:
        with self.lock:
            self._send(msg)
            if msg.type == "note_on" and msg.velocity > 0:
                self.sounding.add((msg.channel, msg.note))
            elif msg.type in ("note_off", "note_on"):
                self.sounding.discard((msg.channel, msg.note))
            if pulse is not None and msg.type in ("note_on", "note_off"):
                self.sent.append((pulse, msg))

    def pulse(self, pulse: int) -> None:
        """Send what is due at ``pulse`` (nothing between sixteenth steps)."""
        if self.closed:
            return
        self.last_pulse = pulse
        if pulse % PULSES_PER_STEP:
            if pulse % PULSES_PER_STEP == PULSES_PER_STEP // 2 and self.on_quiet is not None:
                self.on_quiet(pulse)
            return
        step = pulse // PULSES_PER_STEP
        k, s = divmod(step, STEPS)
        with self.lock:
            if s == 0 or k != self.phrase_index:
                if self.current is not None and k == self.phrase_index + 1:
                    for msg in self.current.events.get(STEPS, []):
                        self.send(msg, pulse)
                else:
                    self.notes_off(pulse)  # a jump (song position): end what sounds
                phrase = self.next_phrase(k)
                if phrase is None:
                    self.late_phrases += 1
                self.current, self.phrase_index = phrase, k
            if self.current is not None:
                for msg in self.current.events.get(s, []):
                    self.send(msg, pulse)
        if self.on_step is not None:
            self.on_step(k, s)

    def notes_off(self, pulse: int | None = None) -> None:
        with self.lock:
            for ch, note in sorted(self.sounding):
                self.send(mido.Message("note_off", channel=ch, note=note, velocity=0), pulse)
            self.current = None  # a stopped phrase does not resume mid-note

    def panic(self) -> None:
        """Every sounding note off, then All Notes Off (CC 123) and All Sound Off (CC 120)."""
        with self.lock:
            self.closed = True
            channels = {self.channel} | {ch for ch, _ in self.sounding}
            self.notes_off(self.last_pulse)
            for ch in sorted(channels):
                self._send(mido.Message("control_change", channel=ch, control=123, value=0))
                self._send(mido.Message("control_change", channel=ch, control=120, value=0))


def run_clock(
    transport: Transport,
    tempo: Tempo,
    stop: threading.Event,
    clock: Clock,
    send_clock: bool = False,
    until_pulse: int | None = None,
    on_step_sent: Callable[[int, float], None] | None = None,
) -> int:
    """Drive ``transport`` from our own clock until ``stop`` is set or ``until_pulse`` is reached.
    With ``send_clock`` melody-lc is the MIDI clock master: start, 24 pulses per quarter, stop.
    Returns the pulse it stopped at. ``on_step_sent(pulse, seconds)`` hears, for each sixteenth,
    how long after its deadline its messages had been sent."""
    pulse = 0
    try:
        if send_clock:
            clock.sleep_until(tempo.time_of(0))
            transport.send(mido.Message("start"))
        while not stop.is_set() and (until_pulse is None or pulse < until_pulse):
            deadline = tempo.time_of(pulse)
            clock.sleep_until(deadline)
            if stop.is_set():
                break
            if send_clock:
                transport.send(mido.Message("clock"))
            transport.pulse(pulse)
            if on_step_sent is not None and pulse % PULSES_PER_STEP == 0:
                on_step_sent(pulse, clock.now() - deadline)
            pulse += 1
        if not stop.is_set():  # the end: notes that last to it stop on time
            clock.sleep_until(tempo.time_of(pulse))
    finally:
        transport.notes_off(pulse)
        if send_clock:
            transport.send(mido.Message("stop"))
    return pulse


class Follower:
    """Slave ``transport`` to incoming MIDI clock: ``start`` plays from the top, ``stop`` pauses
    (and ends sounding notes), ``continue`` resumes, ``songpos`` (in sixteenths) moves the position.
    The tempo is estimated from pulse intervals (``bpm``)."""

    def __init__(self, transport: Transport, clock: Clock | None = None) -> None:
        self.transport, self.clock = transport, clock or Clock()
        self.playing = False
        self.position = 0  # the next pulse to play
        self.bpm: float | None = None
        self._last_clock: float | None = None
        self._intervals: list[float] = []
        self.stopped = threading.Event()

    def __call__(self, msg: mido.Message) -> None:
        kind = msg.type
        if kind == "clock":
            now = self.clock.now()
            if self._last_clock is not None:
                self._intervals = (self._intervals + [now - self._last_clock])[-PULSES_PER_QUARTER:]
                mean = sum(self._intervals) / len(self._intervals)
                if mean > 0:  # pulses that arrive in a burst tell no tempo
                    self.bpm = 60.0 / mean / PULSES_PER_QUARTER
            self._last_clock = now
            if self.playing:
                self.transport.pulse(self.position)
                self.position += 1
        elif kind == "start":
            self.position, self.playing = 0, True
            self.stopped.clear()
        elif kind == "continue":
            self.playing = True
            self.stopped.clear()
        elif kind == "stop":
            self.playing = False
            self.transport.notes_off(self.position)
            self.stopped.set()
        elif kind == "songpos":
            self.transport.notes_off(self.position)
            self.position = msg.pos * PULSES_PER_STEP


def set_thread_priority(nice: int = 0, realtime: bool = False) -> None:
    """Best effort, for the calling thread: real-time scheduling for the clock when the system allows
    it (root, or an rtprio limit), a higher nice value for background work. Silently skipped elsewhere."""
    try:
        if realtime:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        elif nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


def quick_gil_handoff() -> None:
    """While streaming: a thread that asks for the GIL (the clock, a chain's thread) gets it within
    0.5 ms from a thread computing in Python (a phrase being generated), not Python's default 5 ms."""
    sys.setswitchinterval(0.0005)


def quiet_gc(on: bool = True) -> None:
    """While streaming: freeze what is loaded (the model, torch, music21: about 170,000 objects) so
    that the garbage collector does not walk it again while notes are due; ``on=False`` (at stop)
    gives it back to the collector. Measured: a full collection over it takes 75-85 ms of the GIL,
    and one that fell on the first beats of a stream delayed its first notes by 40-70 ms; the
    freeze takes microseconds, and a collection after it under 0.1 ms."""
    import gc

    gc.freeze() if on else gc.unfreeze()
