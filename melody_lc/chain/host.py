"""Running chains: sources feed events into a chain of processors, whose output goes to a sink.

    cf = load_chains("live.chain")
    rack = Rack(cf, prepare=lambda rules_path: (rules, model, fitted), bpm=100, log=print)
    rack.start(); ...; rack.stop()            # stop ends every sounding note at every sink

The rack builds each chain from its declarations (:mod:`melody_lc.chain.registry`: each source and
sink declaration makes its own implementation), one :class:`~melody_lc.chain.runner.ChainRunner`
per chain (:mod:`melody_lc.chain.runner`: threads, timing, isolation), and runs them on one tempo.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from melody_lc.chain.api import Processor
from melody_lc.chain.checks import check_files
from melody_lc.chain.constrain import Constrain
from melody_lc.chain.runner import ChainRunner, Slot, make_processor
from melody_lc.chain.spec import ChainError, ChainFile, ChainSpec, Link
from melody_lc.midi.schedule import Clock, Tempo, quick_gil_handoff, quiet_gc


@dataclass
class Rack:
    """Every chain of a chain file, running together on one tempo.

    ``prepare(rules_path) -> (rules, model, fitted)`` loads (and fits, if need be) what generators
    and the constraint transform use (for a rules file of phrase sections, phrase 1's, then the
    plan and every section's fit). ``sources`` may give a ready source for a chain by name (the
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
        self.loops = check_files(self.chains)  # before any port opens; path -> the .mid loop read
        try:
            for spec in self.chains.chains:
                self._build(spec)
        except BaseException:
            self.close()
            raise

    def resources(self, link: Link):
        """(rules, model, fitted) for the rules file of ``link`` (a generator or constrain())."""
        path = link.values["rules"]
        if path not in self._prepared:
            if self.prepare is None:
                raise ChainError(str(self.chains.path), link.line, link.column, f"{link.name} needs a model")
            self._prepared[path] = self.prepare(path)
        return self._prepared[path]

    def port(self, link: Link):
        """(output port, its lock) named by a sink's ``port`` or ``virtual``; one per name, shared."""
        from melody_lc.midi.ports import open_output

        port, virtual = link.values.get("port"), link.values.get("virtual")
        key = ("port", port) if port else ("virtual", virtual or "melody-lc")
        if key not in self.ports:
            opened = open_output(port) if port else open_output(None, virtual_name=virtual or "melody-lc")
            self.ports[key] = (opened, threading.Lock())
        return self.ports[key]

    def synth(self, link: Link):
        """(the built-in synth, its lock) for a ``synth(...)`` sink: one per sink, a JACK client
        named after its chain (melody-lc-synth-lead)."""
        from melody_lc.audio.port import SYNTH_CLIENT, SynthPort

        key = ("synth", link.line, link.column)
        if key not in self.ports:
            chain = next(c.name for c in self.chains.chains if link in c.links)
            port = SynthPort(link.values["soundfont"] or None, link.values["program"], name=f"{SYNTH_CLIENT}-{chain}")
            self.ports[key] = (port, threading.Lock())
        return self.ports[key]

    def _build(self, spec: ChainSpec) -> None:
        sink = spec.sink.cls.sink(spec.sink, self)
        slots = []
        for link in spec.transforms:
            resources = self.resources(link) if link.cls is Constrain else None  # its errors stop the rack
            try:
                slots.append(Slot(make_processor(link, resources), link, resources=resources))
            except Exception as e:  # a plugin whose constructor fails is listed, and bypassed
                slot = Slot(Processor(), link, failed=f"could not be made: {type(e).__name__}: {e}")
                slots.append(slot)
                self.log(f"chain {spec.name}: {link.name} bypassed: {slot.failed}")
        runner = ChainRunner(spec, slots, sink, self.tempo, self.clock, self.log)
        self.runners.append(runner)
        if spec.name in self.sources:  # a ready source the caller gave (the terminal UI's own generator)
            self.sources[spec.name] = self.sources[spec.name](runner)
        else:
            self.sources[spec.name] = spec.source.cls.source(spec.source, self, runner)

    def start(self) -> None:
        for src in self.sources.values():
            if hasattr(src, "prime"):
                src.prime()
        quiet_gc()
        quick_gil_handoff()  # each chain's thread gets the GIL back quickly from a generating one
        self.tempo.t_anchor, self.tempo.pulse_anchor = self.clock.now() + self.lead, 0
        for r in self.runners:
            r.start()
        for src in self.sources.values():
            src.start(self.tempo)

    def set_bpm(self, bpm: float) -> None:
        pulse = max(
            0,
            math.ceil(
                (self.clock.now() - self.tempo.t_anchor) / self.tempo.seconds_per_pulse + self.tempo.pulse_anchor
            ),
        )
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
        """After ``stop``: the processors end their own work, then the ports close."""
        for r in self.runners:
            r.close()
        for src in self.sources.values():
            if getattr(src, "port", None) is not None:  # an input port, open since the rack was built
                src.stop()
        for port, _ in self.ports.values():
            try:
                port.close()
            except Exception:  # noqa: BLE001, S110
                pass
        self.ports = {}
