"""The built-in synth as a MIDI output port, so that whatever plays to a port (``stream``, ``live``,
a chain's ``synth`` sink) sounds with no DAW:

    out = SynthPort(program=12)        # marimba; FluidSynth on JACK or the default audio output
    out.send(mido.Message("note_on", note=60, velocity=90))
    both = Tee(midi_port, out)         # to a DAW's port and the built-in synth at once

A port-like object as mido's are: ``name``, ``send``, ``close``, ``closed``. ``muted`` silences
it (the TUI's synth key) and ends what it was sounding.
"""

from __future__ import annotations

import threading

import mido

from melody_lc.audio.synth import Synth

SYNTH_CLIENT = "melody-lc-synth"  # the JACK client (and port name) of the built-in synth


class SynthPort:
    _melody_lc_virtual = True  # ours: alive as long as melody-lc is (midi.ports.PortWatch)

    def __init__(
        self,
        soundfont=None,
        program: int | None = None,
        driver: str | None = None,
        name: str = SYNTH_CLIENT,
        muted: bool = False,
    ) -> None:
        self.synth = Synth(soundfont)
        try:
            self.driver = self.synth.start(driver, client_name=name)
        except BaseException:
            self.synth.close()
            raise
        self.name, self.program, self.closed = name, program, False
        self._lock = threading.Lock()
        self._muted = muted
        if program is not None:
            for ch in range(16):
                if ch != 9:
                    self.synth.send(mido.Message("program_change", channel=ch, program=program))

    @property
    def muted(self) -> bool:
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        with self._lock:
            self._muted = bool(value)
            if self._muted:
                self.synth.all_off()

    def send(self, msg: mido.Message) -> None:
        with self._lock:
            if self.closed:
                return
            if self._muted and msg.type in ("note_on", "program_change"):
                return  # silent, but note-offs and controllers still pass: nothing hangs on unmute
            if self.program is not None and msg.type == "program_change":
                return  # the program chosen for the synth holds
            self.synth.send(msg)

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self.synth.all_off()
                self.synth.close()


class Tee:
    """Sends each message to several ports: a MIDI port and the built-in synth, say. Its name and
    liveness are the first port's."""

    def __init__(self, first, *others) -> None:
        self.ports = [first, *others]  # more may join (the TUI's synth key)
        self.name = first.name
        self._melody_lc_virtual = getattr(first, "_melody_lc_virtual", False)
        self.closed = False

    def send(self, msg: mido.Message) -> None:
        for p in self.ports:
            p.send(msg)

    def close(self) -> None:
        self.closed = True
        for p in self.ports:
            p.close()
