"""Running chains: sources feed events into a chain of processors, whose output goes to a sink.

    cf = load_chains("live.chain")
    rack = Rack(cf, prepare=lambda rules_path: (rules, model, fitted), bpm=100, log=print)
    rack.start(); ...; rack.stop()            # stop ends every sounding note at every sink

Each chain has a thread of its own that runs its processors: sources only hand it messages
(:meth:`ChainRunner.feed`, from the clock thread or a port callback), so the clock never waits
for a processor. The thread stamps each message with its arrival time plus the chain's delay (the
sum of the processors' lookahead), runs the processors, and puts what they return in a heap that
it sends from in time order, each event when it is due. It also calls every processor at least once per sixteenth
with no events (a tick), so processors can release events of their own.

Isolation: a processor that raises, returns something other than events, uses more CPU time
than its budget in one call, or does not return at all (a watchdog notices) is bypassed from then
on and reported; the events it was given pass on unchanged, and the sink ends the notes sounding
through the chain so none hangs. A sink knows what it has sounding: stopping always ends it all
with note-offs, then All Notes Off and All Sound Off.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mido

from melody_lc.chain.api import Context, Event, ParamError, Processor
from melody_lc.chain.builtin import Constrain
from melody_lc.chain.syntax import ChainError, ChainFile, ChainSpec, Link
from melody_lc.midi.schedule import PULSES_PER_QUARTER, Clock, Tempo, quiet_gc, set_thread_priority

SYSTEM = ("clock", "start", "stop", "continue", "songpos", "song_select", "reset", "active_sensing")
HANG_S = 0.25  # a call still running after this long is a processor that does not return


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

    def __init__(self, port=None, port_lock: threading.Lock | None = None, channel: int = 0,
                 record: str | None = None) -> None:
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
            tick = max(now, round((t - tempo.t_anchor) / tempo.seconds_per_pulse * tpq / PULSES_PER_QUARTER
                                  + tempo.pulse_anchor * tpq / PULSES_PER_QUARTER))
            track.append(msg.copy(time=tick - now))
            now = tick
        Path(self.record_path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.record_path) as tmp:
            mido.MidiFile(type=0, ticks_per_beat=tpq, tracks=[track]).save(tmp)


class ChainRunner:
    """One chain at run time: processors between a source's messages and a sink."""

    def __init__(self, spec: ChainSpec, slots: list[Slot], sink: Sink, tempo: Tempo, clock: Clock | None = None,
                 log: Callable[[str], None] | None = None) -> None:
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
        return Context(now, self.tempo.bpm, self.tempo.t_anchor, self.tempo.pulse_anchor / PULSES_PER_QUARTER,
                       horizon=2 * period, chain=self.spec.name)

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
            c0 = time.thread_time()
            try:
                out = slot.proc.process(list(events), ctx)
                problem = _check_events(out)
            except Exception as e:  # noqa: BLE001 - a processor's failure is reported, not fatal
                problem = f"raised {type(e).__name__}: {e}"
            cpu = time.thread_time() - c0
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
            time.sleep(0.02)
            self.watch()

    def watch(self) -> None:
        """The watchdog's check: a loop thread stuck in a processor is replaced by a new one, which
        goes on with what the stuck call was given (through the processors after it) and what came
        after. The stuck processor is not reset: it may still be running."""
        with self.lock:
            busy = self._busy
            if busy is None or not self.running:
                return
            gen, slot, rest, events, started = busy
            limit = max(HANG_S, 10 * slot.proc.budget)
            if gen != self._gen or time.monotonic() - started <= limit:
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
            return f"process returned {type(e).__name__ if not isinstance(e, Event) else type(e.msg).__name__} " \
                   "where an Event of a mido.Message belongs"
        if not isinstance(e.time, (int, float)) or not math.isfinite(e.time):
            return f"process returned an event at time {e.time!r}"
    return None


def make_processor(link: Link, resources=None) -> Processor:
    if link.cls is Constrain:
        proc = Constrain(resources=resources, **link.values)
        proc.open_values = link.open_values
        return proc
    return link.cls(**link.values)


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
class EngineSource:
    """A live engine (the latent walk steered by the fitted actor, as `stream` plays it) as a
    chain's source: the rack has it make its first phrase, then starts it on the rack's tempo."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def prime(self) -> None:
        """Make the first phrase now, before the clock is set going."""
        self.engine._make(0)

    def start(self, tempo: Tempo) -> None:
        self.engine.start(tempo=tempo)

    def stop(self) -> None:
        self.engine.stop()


def generator_source(link: Link, prepared, runner: ChainRunner, log=None) -> EngineSource:
    from melody_lc.midi.live import LiveConfig, LiveEngine, PhraseMaker

    v = link.values
    rules, model, fitted = prepared
    maker = PhraseMaker(model, rules, fitted, link.open_values, v["temperature"], v["variation"], v["seed"])
    return EngineSource(LiveEngine(maker, runner, LiveConfig(channel=v["channel"] - 1, velocity=v["velocity"]),
                                   clock=runner.clock, log=log))


class InputSource:
    """What is played into a MIDI input port (messages before the chain starts are dropped)."""

    def __init__(self, link: Link, runner: ChainRunner) -> None:
        self.link, self.runner, self.port = link, runner, None

    def open(self) -> None:
        from melody_lc.midi.ports import open_input

        port, virtual = self.link.values["port"], self.link.values["virtual"]
        self.port = open_input(port or None, virtual_name=virtual or "melody-lc-in",
                               callback=lambda msg: self.runner.feed([msg]))

    def start(self, tempo: Tempo) -> None:
        if self.port is None:
            self.open()

    def stop(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None


def read_loop(path: str) -> tuple[list[tuple[float, mido.Message]], float]:
    """(beat, message) of every channel message of a .mid file, and its length in beats, rounded
    up to whole 4/4 bars."""
    mid = mido.MidiFile(path)
    events, tick = [], 0
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if not msg.is_meta and hasattr(msg, "channel"):
            events.append((tick / mid.ticks_per_beat, msg.copy(time=0)))
    end = max((b for b, _ in events), default=0.0)
    return events, max(4.0, math.ceil(end / 4 - 1e-9) * 4.0)


class FileSource:
    """A .mid file played in tempo from the chain's start, looped."""

    def __init__(self, link: Link, runner: ChainRunner, loop: tuple | None = None) -> None:
        self.runner, self.loop = runner, link.values["loop"]
        self.events, self.length = loop or read_loop(link.values["path"])
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, tempo: Tempo) -> None:
        self.tempo = tempo
        self.thread = threading.Thread(target=self._play, name="melody-lc-file", daemon=True)
        self.thread.start()

    def _play(self) -> None:
        clock = self.runner.clock
        for n in itertools.count():
            for beat, msg in self.events:
                t = self.tempo.time_of((n * self.length + beat) * PULSES_PER_QUARTER)
                clock.sleep_until(t)
                if self.stop_event.is_set():
                    return
                self.runner.feed([msg], t)
            if not self.loop:
                return
            clock.sleep_until(self.tempo.time_of((n + 1) * self.length * PULSES_PER_QUARTER))

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=1.0)


def open_values(cf: ChainFile, link: Link, rules) -> dict | None:
    """The values a chain file gives the open parameters of ``link``'s rules (``tonic=G``,
    ``density=4``), checked against them; None when it gives none (a generator then draws them once;
    the constraint transform needs them all)."""
    from melody_lc.melody.pitches import parse_open_value

    def fail(arg, message, column=None):
        raise ChainError(str(cf.path), arg.line if arg else link.line, column or (arg.column if arg else link.column),
                         message)

    values = {}
    for name, arg in link.open_args.items():
        spec = rules.open.get(name)
        if spec is None:
            opened = ", ".join(rules.open) or "none"
            fail(arg, f"{link.name} has no parameter '{name}', and it is not an open parameter of "
                      f"{Path(link.values['rules']).name} (open: {opened})", arg.name_column)
        try:
            values[name] = parse_open_value(name, spec, arg.text)
        except ValueError as e:
            fail(arg, str(e))
    missing = sorted(set(rules.open) - set(values))
    if missing and (values or link.cls is Constrain):
        fail(None, f"{link.name} needs a value for every open parameter of {Path(link.values['rules']).name}; "
                   f"missing: {', '.join(missing)} (e.g. {missing[0]}=...)")
    return values or None


def check_files(cf: ChainFile) -> dict[str, tuple]:
    """Read every rules file and .mid loop a chain file names, so that a bad one is reported before
    anything runs; returns the loops read (path -> :func:`read_loop`)."""
    from melody_lc.rules import load_rules

    loops = {}
    for spec in cf.chains:
        for link in spec.links:
            if link.values.get("rules") and link.kind != "sink":
                if not Path(link.values["rules"]).is_file():
                    raise ChainError(str(cf.path), link.line, link.column, f"no such rules file: {link.values['rules']}")
                rules = load_rules(link.values["rules"])  # a RulesError names its own file and line
                link.open_values = open_values(cf, link, rules)
            record = link.values.get("record") if link.name == "out" else link.values.get("path") if link.name == "record" else None
            if record:
                folder = Path(record).parent
                while not folder.exists() and folder != folder.parent:
                    folder = folder.parent
                if not os.access(folder, os.W_OK):
                    raise ChainError(str(cf.path), link.line, link.column, f"cannot write the recording {record}: "
                                     f"{folder} is not writable")
            if link.name == "file" and link.kind == "source":
                try:
                    loops[link.values["path"]] = read_loop(link.values["path"])
                except (OSError, ValueError, EOFError, KeyError, IndexError) as e:
                    why = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
                    raise ChainError(str(cf.path), link.line, link.column,
                                     f"cannot read {link.values['path']} as a MIDI file: {why}") from None
    return loops


# ------------------------------------------------------------------------------------------------
@dataclass
class Rack:
    """Every chain of a chain file, running together on one tempo.

    ``prepare(rules_path) -> (rules, model, fitted)`` loads (and fits, if need be) what generators
    and the constraint transform use. ``sources`` may give a ready source for a chain by name (the
    terminal UI gives its own steerable generator)."""

    chains: ChainFile
    prepare: Callable | None = None
    bpm: float = 120.0
    clock: Clock = field(default_factory=Clock)
    log: Callable[[str], None] = lambda s: None
    lead: float = 0.05
    runners: list[ChainRunner] = field(default_factory=list)
    sources: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tempo = Tempo(self.bpm, 0.0)  # the caller decides between --bpm and the file's tempo
        self.record_errors: list[str] = []
        self._prepared: dict[str, tuple] = {}
        self._loops = check_files(self.chains)  # before any port opens
        try:
            for spec in self.chains.chains:
                self._build(spec)
        except BaseException:
            self.close()
            raise

    def _resources(self, link: Link):
        path = link.values["rules"]
        if path not in self._prepared:
            if self.prepare is None:
                raise ChainError(str(self.chains.path), link.line, link.column, f"{link.name} needs a model")
            self._prepared[path] = self.prepare(path)
        return self._prepared[path]

    def _port(self, link: Link):
        from melody_lc.midi.ports import open_output

        port, virtual = link.values.get("port"), link.values.get("virtual")
        key = ("port", port) if port else ("virtual", virtual or "melody-lc")
        if key not in self.ports:
            opened = open_output(port) if port else open_output(None, virtual_name=virtual or "melody-lc")
            self.ports[key] = (opened, threading.Lock())
        return self.ports[key]

    def _build(self, spec: ChainSpec) -> None:
        sink_link = spec.sink
        if sink_link.name == "record":
            sink = Sink(record=sink_link.values["path"])
        else:
            port, lock = self._port(sink_link)
            sink = Sink(port, lock, sink_link.values["channel"], sink_link.values["record"] or None)
        slots = []
        for link in spec.transforms:
            resources = self._resources(link) if link.cls is Constrain else None  # its errors stop the rack
            try:
                slots.append(Slot(make_processor(link, resources), link, resources=resources))
            except Exception as e:  # a plugin whose constructor fails is listed, and bypassed
                slot = Slot(Processor(), link, failed=f"could not be made: {type(e).__name__}: {e}")
                slots.append(slot)
                self.log(f"chain {spec.name}: {link.name} bypassed: {slot.failed}")
        runner = ChainRunner(spec, slots, sink, self.tempo, self.clock, self.log)
        self.runners.append(runner)
        src = spec.source
        if spec.name in self.sources:
            self.sources[spec.name] = self.sources[spec.name](runner)
        elif src.name == "generator":
            self.sources[spec.name] = generator_source(src, self._resources(src), runner, log=self.log)
        elif src.name == "input":
            self.sources[spec.name] = InputSource(src, runner)
            self.sources[spec.name].open()  # now, so a missing port is reported before anything plays
        elif src.name == "file":
            self.sources[spec.name] = FileSource(src, runner, self._loops[src.values["path"]])

    def start(self) -> None:
        for src in self.sources.values():
            if hasattr(src, "prime"):
                src.prime()
        quiet_gc()
        self.tempo.t_anchor, self.tempo.pulse_anchor = self.clock.now() + self.lead, 0
        for r in self.runners:
            r.start()
        for src in self.sources.values():
            src.start(self.tempo)

    def set_bpm(self, bpm: float) -> None:
        pulse = max(0, math.ceil((self.clock.now() - self.tempo.t_anchor) / self.tempo.seconds_per_pulse
                                 + self.tempo.pulse_anchor))
        self.tempo.change(bpm, pulse)

    def runner(self, name: str) -> ChainRunner:
        return next(r for r in self.runners if r.name == name)

    def stop(self) -> None:
        """Sources stop, then every chain ends its notes at its sink (no note is left hanging)."""
        for src in self.sources.values():
            if hasattr(src, "stop"):
                src.stop()
        for r in self.runners:
            if r.running:
                r.stop()
        quiet_gc(False)
        for r in self.runners:
            try:
                r.sink.write_record(self.tempo)
            except OSError as e:  # reported; the other recordings are still written
                why = f"cannot write the recording {r.sink.record_path}: {e.strerror or e}"
                self.record_errors.append(why)
                self.log(f"chain {r.name}: {why}")

    def close(self) -> None:
        for src in self.sources.values():
            if isinstance(src, InputSource):
                src.stop()
        for port, _ in self.ports.values():
            try:
                port.close()
            except Exception:  # noqa: BLE001, S110
                pass
        self.ports = {}
