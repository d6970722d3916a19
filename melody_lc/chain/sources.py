"""The sources of a chain: the model's generator, a MIDI input, a .mid file looped in tempo.

Each is made by its declaration in :mod:`melody_lc.chain.registry` (``source(link, rack, runner)``)
and has ``start(tempo)`` and ``stop()``; the generator also ``prime()``, making its first phrase
before the clock is set going.
"""

from __future__ import annotations

import itertools
import math
import threading

import mido

from melody_lc.chain.runner import ChainRunner
from melody_lc.chain.spec import Link
from melody_lc.midi.schedule import PULSES_PER_QUARTER, Tempo


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
    from melody_lc.midi.live import LiveConfig, LiveEngine
    from melody_lc.midi.maker import PhraseMaker

    v = link.values
    rules, model, fitted, *plan = prepared  # (..., plan, fits) for a rules file of phrase sections
    maker = PhraseMaker(
        model, rules, fitted, link.open_values, v["temperature"], v["variation"], v["seed"], True, *plan
    )
    return EngineSource(
        LiveEngine(
            maker, runner, LiveConfig(channel=v["channel"] - 1, velocity=v["velocity"]), clock=runner.clock, log=log
        )
    )


class InputSource:
    """What is played into a MIDI input port (messages before the chain starts are dropped)."""

    def __init__(self, link: Link, runner: ChainRunner) -> None:
        self.link, self.runner, self.port = link, runner, None

    def open(self) -> None:
        from melody_lc.midi.ports import open_input

        port, virtual = self.link.values["port"], self.link.values["virtual"]
        self.port = open_input(
            port or None, virtual_name=virtual or "melody-lc-in", callback=lambda msg: self.runner.feed([msg])
        )

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
