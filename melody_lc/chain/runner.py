"""A running chain: its processors on a thread of their own, and the sink it sends to.

Each chain has a thread of its own that runs its processors: sources only hand it messages
(:meth:`ChainRunner.feed`, from the clock thread or a port callback), so the clock never waits
for a processor. The thread stamps each message with its arrival time plus the chain's delay (the
sum of the processors' lookahead), runs the processors, and puts what they return in a heap that
it sends from in time order, each event when it is due. It also calls every processor at least once
per sixteenth with no events (a tick), so processors can release events of their own.

Isolation: a processor that raises, returns something other than events, uses more CPU time
than its budget in one call, or does not return at all (a watchdog notices) is bypassed from then
on and reported; the events it was given pass on unchanged, and the sink ends the notes sounding
through the chain so none hangs. A sink knows what it has sounding: stopping always ends it all
with note-offs, then All Notes Off and All Sound Off.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mido

from melody_lc.chain.api import Context, Event, ParamError, Processor
from melody_lc.chain.constrain import Constrain
from melody_lc.chain.spec import ChainSpec, Link
from melody_lc.midi.schedule import PULSES_PER_QUARTER, Clock, Tempo, set_thread_priority

SYSTEM = ("clock", "start", "stop", "continue", "songpos", "song_select", "reset", "active_sensing")
HANG_S = 0.25  # a call still running after this long is a processor that does not return
WATCH_S = 0.02  # how often the watchdog looks


# Garbage collection runs in whichever thread allocates when a threshold is reached, and its pause
# counts as that thread's CPU time: a processor's budget is charged for its own work only.
_gc_time = threading.local()


def _time_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_time.began = time.thread_time()
    elif hasattr(_gc_time, "began"):
        _gc_time.total = getattr(_gc_time, "total", 0.0) + time.thread_time() - _gc_time.began


def gc_thread_time() -> float:
    """CPU seconds this thread has spent in garbage collection so far."""
    return getattr(_gc_time, "total", 0.0)


gc.callbacks.append(_time_gc)


@dataclass
class Slot:
    """A processor in a running chain, with what the host measured of it."""

    proc: Processor
    link: Link
    failed: str | None = None
    resources: tuple | None = None  # (rules, model, fitted) of the constraint transform
    calls: int = 0
    cpu_s: float = 0.0  # thread CPU time over all calls
    max_cpu_s: float = 0.0

    @property
    def active(self) -> bool:
        return not self.link.bypass and self.failed is None

    @property
    def state(self) -> str:
        return "failed" if self.failed else "bypassed" if self.link.bypass else "on"


class Sink:
    """An output port (shared between chains, with a lock) and/or a recording; it tracks the notes
    it has sounding so that :meth:`panic` can end them."""

    def __init__(
        self, port=None, port_lock: threading.Lock | None = None, channel: int = 0, record: str | None = None
    ) -> None:
        self.port, self.port_lock = port, port_lock or threading.Lock()
        self.channel = channel  # 1-16 forces every channel message there; 0 keeps them
        self.record_path = record
        self.recorded: list[tuple[float, mido.Message]] = []
        self.sounding: dict[tuple[int, int], int] = {}  # (channel, note) -> note-ons not yet ended
        self.channels: set[int] = set()

    def send(self, msg: mido.Message, t: float) -> None:
        if self.channel and hasattr(msg, "channel"):
            msg = msg.copy(channel=self.channel - 1)
        key = (getattr(msg, "channel", 0), getattr(msg, "note", 0))
        if msg.type == "note_on" and msg.velocity > 0:
            self.sounding[key] = self.sounding.get(key, 0) + 1
        elif msg.type in ("note_on", "note_off") and key in self.sounding:
            self.sounding[key] -= 1  # a synth that stacks voices of one pitch ends one of them
            if not self.sounding[key]:
                del self.sounding[key]
        if hasattr(msg, "channel"):
            self.channels.add(msg.channel)
        if self.port is not None:
            with self.port_lock:
                self.port.send(msg)
        if self.record_path:
            self.recorded.append((t, msg))

    def notes_off(self, t: float) -> None:
        for (ch, note), n in sorted(self.sounding.items()):
            for _ in range(n):
                self.send(mido.Message("note_off", channel=ch, note=note, velocity=0), t)

    def panic(self, t: float) -> None:
        self.notes_off(t)
        for ch in sorted(self.channels):
            for cc in (123, 120):
                self.send(mido.Message("control_change", channel=ch, control=cc, value=0), t)

    def write_record(self, tempo: Tempo) -> None:
        """The recording as a type-0 .mid (480 ticks per quarter), written atomically."""
        if not self.record_path:
            return
        from melody_lc.fileio import atomic_path

        tpq = 480
        track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo.bpm), time=0)])
        now = 0
        for t, msg in self.recorded:
            tick = max(
                now,
                round(
                    (t - tempo.t_anchor) / tempo.seconds_per_pulse * tpq / PULSES_PER_QUARTER
                    + tempo.pulse_anchor * tpq / PULSES_PER_QUARTER
                ),
            )
            track.append(msg.copy(time=tick - now))
            now = tick
        Path(self.record_path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.record_path) as tmp:
            mido.MidiFile(type=0, ticks_per_beat=tpq, tracks=[track]).save(tmp)


class ChainRunner:
    """One chain at run time: processors between a source's messages and a sink."""

    def __init__(
        self,
        spec: ChainSpec,
        slots: list[Slot],
        sink: Sink,
        tempo: Tempo,
        clock: Clock | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.spec, self.slots, self.sink, self.tempo = spec, slots, sink, tempo
        self.clock = clock or Clock()
        self.log = log or (lambda s: None)
        self.lock = threading.Condition()
        # (the processors still to run, or None for all: fresh from a source; events)
        self._inbox: deque[tuple[list[Slot] | None, list[Event]]] = deque()
        self._changes = 0  # bumped by every change made from outside the loop (bypass, move, edit, hang)
        self._heap: list[tuple[float, int, mido.Message]] = []
        self._seq = itertools.count()
        self._gen = 0  # bumped when a loop thread is replaced or the chain stops: the old one ends
        self._busy: tuple | None = None  # (gen, slot, the slots after it, events, started): the call in progress
        self._next_tick = 0.0
        self.running = False
        self.thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._watched: tuple | None = None  # (the call, seconds seen running, last look): the watchdog's own
        self.latencies: list[float] | None = None  # set to [] to measure: per item, arrival to sent

    @property
    def name(self) -> str:
        return self.spec.name

    # -- sources hand messages in ----------------------------------------------------------------
    def feed(self, msgs: list[mido.Message], t: float | None = None) -> None:
        t = self.clock.now() if t is None else t
        with self.lock:
            if self.running:
                self._inbox.append((None, [Event(t, m) for m in msgs]))
                self.lock.notify()

    def send(self, msg: mido.Message) -> None:  # so a LiveEngine can use a chain as its port
        self.feed([msg])

    def delay(self, slots: list[Slot]) -> float:
        total = 0.0
        for slot in slots:
            if slot.active:
                try:
                    total += float(slot.proc.lookahead(self.tempo.bpm))
                except Exception as e:  # noqa: BLE001 - a plugin's failure is reported, not fatal
                    self._fail(slot, f"raised {type(e).__name__} in lookahead(): {e}", by_loop=True)
        return total if math.isfinite(total) and total >= 0 else 0.0

    def context(self, now: float) -> Context:
        period = min(60.0 / self.tempo.bpm / 4, 0.025)
        return Context(
            now,
            self.tempo.bpm,
            self.tempo.t_anchor,
            self.tempo.pulse_anchor / PULSES_PER_QUARTER,
            horizon=2 * period,
            chain=self.spec.name,
        )

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        with self.lock:
            self.running = True
            self._next_tick = self.clock.now()
            self._gen += 1
            gen = self._gen
        self._spawn(gen)
        self._watchdog = threading.Thread(target=self._watch, name=f"melody-lc-watchdog-{self.name}", daemon=True)
        self._watchdog.start()

    def _spawn(self, gen: int) -> None:
        self.thread = threading.Thread(target=self._loop, args=(gen,), name=f"melody-lc-chain-{self.name}", daemon=True)
        self.thread.start()

    def _loop(self, gen: int) -> None:
        set_thread_priority(realtime=True)
        while True:
            with self.lock:
                if not self.running or gen != self._gen:
                    return
                now = self.clock.now()
                wake = min(self._next_tick, self._heap[0][0] if self._heap else math.inf)
                if not self._inbox and wake > now:
                    self.lock.wait(min(wake - now, 0.05))
                    if not self.running or gen != self._gen:
                        return
                item = self._inbox.popleft() if self._inbox else None
                # the processors this item goes through: a move while it runs takes effect at the next
                slots = list(self.slots) if item is None or item[0] is None else item[0]
                changes = self._changes
            now = self.clock.now()
            tick = now >= self._next_tick
            if tick:
                self._next_tick = now + min(60.0 / self.tempo.bpm / 4, 0.025)
            if item is not None or tick:
                fresh, events = item is None or item[0] is None, item[1] if item is not None else []
                if fresh and events:  # from a source: the chain's delay is added once
                    d = self.delay(slots)
                    events = [e.at(e.time + d) for e in events]
                system = [e for e in events if e.msg.type in SYSTEM]
                out = self._run(gen, slots, [e for e in events if e.msg.type not in SYSTEM], now)
                if out is None:
                    return  # this thread was replaced (a hang) or the chain stopped
                self._schedule(system + out, gen, changes)
                if self.latencies is not None and item is not None and item[1]:
                    self.latencies.append(self.clock.now() - min(e.time for e in item[1]))
            else:
                self._send_due(gen)

    def _run(self, gen: int, slots: list[Slot], events: list[Event], now: float) -> list[Event] | None:
        ctx = self.context(now)
        for i, slot in enumerate(slots):
            if not slot.active:
                continue
            self._busy = (gen, slot, slots[i + 1 :], events, time.monotonic())
            c0, gc0 = time.thread_time(), gc_thread_time()
            try:
                out = slot.proc.process(list(events), ctx)
                problem = _check_events(out)
            except Exception as e:  # noqa: BLE001 - a processor's failure is reported, not fatal
                problem = f"raised {type(e).__name__}: {e}"
            cpu = time.thread_time() - c0 - (gc_thread_time() - gc0)  # a collection's pause is not the processor's
            with self.lock:  # the watchdog decides under the same lock: one of us wins
                if gen != self._gen:
                    return None
                self._busy = None
            slot.calls += 1
            slot.cpu_s += cpu
            slot.max_cpu_s = max(slot.max_cpu_s, cpu)
            if problem is None and cpu > slot.proc.budget:
                problem = f"took {cpu * 1000:.1f} ms of CPU in one call, over its {slot.proc.budget * 1000:g} ms budget"
            if problem is not None:
                self._fail(slot, problem, by_loop=True)
                continue  # what it was given passes on unchanged
            events = out
        return events

    def _flush(self, by_loop: bool = False) -> None:
        """After a change in the chain: notes queued for later are dropped, every note sounding
        through the chain ends now, and every processor forgets its notes in flight, so no note-on
        is left without its note-off. A change made from outside the loop also voids the note-ons
        of a call in progress (they were made by the chain as it was)."""
        with self.lock:
            self._heap = [h for h in self._heap if h[2].type not in ("note_on", "note_off")]
            heapq.heapify(self._heap)
            self.sink.notes_off(self.clock.now())
            if not by_loop:
                self._changes += 1
        for slot in list(self.slots):
            self._reset(slot)

    def _reset(self, slot: Slot) -> None:
        if slot.failed and "did not return" in slot.failed:
            return  # it may still be running on the stuck thread: leave it alone
        try:
            slot.proc.reset()
        except Exception as e:  # noqa: BLE001 - a plugin's reset is not allowed to break the host
            self.log(f"chain {self.name}: {slot.link.name}: reset raised {type(e).__name__}: {e}")

    def close(self) -> None:
        """After ``stop``: each processor ends work of its own (``Processor.close``)."""
        for slot in self.slots:
            if slot.failed and "did not return" in slot.failed:
                continue
            try:
                slot.proc.close()
            except Exception as e:  # noqa: BLE001 - a plugin's close is not allowed to break the host
                self.log(f"chain {self.name}: {slot.link.name}: close raised {type(e).__name__}: {e}")

    def _fail(self, slot: Slot, problem: str, by_loop: bool = False) -> None:
        slot.failed = problem
        self.log(f"chain {self.name}: {slot.link.name} bypassed: {problem}")
        self._flush(by_loop)

    def _schedule(self, events: list[Event], gen: int, changes: int) -> None:
        """Everything goes through the heap, so what was queued earlier and is due goes out first."""
        with self.lock:
            if gen != self._gen:
                return
            void = changes != self._changes  # the chain changed while these were made
            for e in events:
                if not (void and e.is_note_on):
                    heapq.heappush(self._heap, (e.time, next(self._seq), e.msg))
        self._send_due(gen)

    def _send_due(self, gen: int) -> None:
        with self.lock:
            now = self.clock.now()
            while self._heap and self._heap[0][0] <= now + 0.0002 and gen == self._gen:
                t, _, msg = heapq.heappop(self._heap)
                self.sink.send(msg, t)

    def _watch(self) -> None:
        while self.running:
            time.sleep(WATCH_S)
            self.watch()

    def watch(self) -> None:
        """The watchdog's check: a loop thread stuck in a processor is replaced by a new one, which
        goes on with what the stuck call was given (through the processors after it) and what came
        after. The stuck processor is not reset: it may still be running.

        A call's time counts only while the watchdog is awake to see it: a gap between two looks
        longer than two periods (the process starved of CPU or of the GIL, which starves the call
        too) counts as two periods, so a loaded machine does not make a working processor look stuck."""
        with self.lock:
            busy, now = self._busy, time.monotonic()
            if busy is None or not self.running:
                return
            gen, slot, rest, events, started = busy
            seen, last = self._watched[1:] if self._watched is not None and self._watched[0] is busy else (0.0, started)
            seen += min(now - last, 2 * WATCH_S)
            self._watched = (busy, seen, now)
            limit = max(HANG_S, 10 * slot.proc.budget)
            if gen != self._gen or seen <= limit:
                return
            self._gen += 1  # the stuck thread's results are dropped if it ever returns
            self._busy = None
            self._inbox.appendleft((rest, events))
            slot.failed = f"did not return within {limit * 1000:.0f} ms"
            new = self._gen
        self._spawn(new)  # first: nothing below may keep the chain silent
        self.log(f"chain {self.name}: {slot.link.name} bypassed: {slot.failed}")
        self._flush()

    def stop(self) -> None:
        """Stop the loop, drop what was still to come, and end every note at the sink."""
        with self.lock:
            self.running = False
            self._gen += 1  # a call that returns after this sends nothing
            self.lock.notify_all()
        for th in (self.thread, self._watchdog):
            if th is not None and th is not threading.current_thread():
                th.join(timeout=1.0)
        with self.lock:
            self._heap.clear()
            self._inbox.clear()
            self.sink.panic(self.clock.now())
        for s in self.slots:
            self._reset(s)

    # -- live changes (the terminal UI) -----------------------------------------------------------
    def set_bypass(self, index: int, on: bool) -> None:
        """Bypass transform ``index`` (or take it back); a failed one stays bypassed until reset."""
        slot = self.slots[index]
        slot.link.bypass = on
        if not on:
            slot.failed = None
        self._flush()

    def move(self, index: int, delta: int) -> int:
        """Move transform ``index`` earlier (-1) or later (+1) in the chain; returns where it went."""
        j = min(max(index + delta, 0), len(self.slots) - 1)
        if j != index:
            with self.lock:
                self.slots[index], self.slots[j] = self.slots[j], self.slots[index]
                links = self.spec.links
                links[index + 1], links[j + 1] = links[j + 1], links[index + 1]
            self._flush()
        return j

    def set_param(self, index: int, name: str, text: str) -> None:
        """Change a parameter (checked; raises ParamError). The processor is made again with the
        new values, so its notes in flight end first."""
        slot = self.slots[index]
        old = (dict(slot.link.values), dict(slot.link.written))
        slot.link.set(name, text)
        try:
            proc = make_processor(slot.link, slot.resources)
        except Exception as e:
            slot.link.values, slot.link.written = old
            raise ParamError(f"{slot.link.name}: {e}") from None
        with self.lock:
            slot.proc = proc
        self._flush()


def _check_events(out) -> str | None:
    """Why ``out`` is not a list of events the host can send (None when it is)."""
    if not isinstance(out, list):
        return f"process returned {type(out).__name__}, not a list of Events"
    for e in out:
        if not isinstance(e, Event) or not isinstance(e.msg, mido.Message):
            return (
                f"process returned {type(e).__name__ if not isinstance(e, Event) else type(e.msg).__name__} "
                "where an Event of a mido.Message belongs"
            )
        if not isinstance(e.time, (int, float)) or not math.isfinite(e.time):
            return f"process returned an event at time {e.time!r}"
    return None


def make_processor(link: Link, resources=None) -> Processor:
    if link.cls is Constrain:
        return Constrain(resources=resources, open_values=link.open_values, **link.values)
    return link.cls(**link.values)
