"""MIDI ports through mido's python-rtmidi backend: which API, listing, opening, clear errors.

The API is chosen once per process:
  MELODY_LC_MIDI_API=alsa|jack|coremidi|windows   when set;
  else on Linux ALSA when the sequencer device exists, otherwise JACK when a JACK server runs;
  else the platform's own (CoreMIDI on macOS, Windows MultiMedia on Windows).

Windows has no virtual ports: there an output must be an existing port (a loopMIDI port, say).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from melody_lc.errors import UserError

API_ENV = "MELODY_LC_MIDI_API"
DEFAULT_PORT = "melody-lc"
_APIS = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE", "windows": "WINDOWS_MM"}


class PortError(UserError):
    """A port problem a user can fix: no such port, no MIDI system, a port that vanished."""


@dataclass(frozen=True)
class Api:
    name: str  # alsa | jack | coremidi | windows
    virtual: bool  # can open virtual ports


def jack_running() -> bool:
    """A JACK server runs (rtmidi can open a JACK client)."""
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return False
    try:  # rtmidi prints a warning and raises when no server runs
        probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="melody-lc-probe")
    except Exception:  # noqa: BLE001 - rtmidi raises its own error types here
        return False
    ok = probe.get_current_api() == rtmidi.API_UNIX_JACK
    probe.delete()
    return ok


def choose_api() -> Api:
    name = os.environ.get(API_ENV, "").strip().lower()
    if name:
        if name not in _APIS:
            raise PortError(f"{API_ENV}={name!r}: expected one of {', '.join(_APIS)}")
    elif sys.platform.startswith("linux"):
        if os.path.exists("/dev/snd/seq"):
            name = "alsa"
        elif jack_running():
            name = "jack"
        else:
            raise PortError(
                "no MIDI system: the ALSA sequencer is absent and no JACK server runs "
                "(start one with `jackd -d dummy`, or set MELODY_LC_MIDI_API)"
            )
    elif sys.platform == "darwin":
        name = "coremidi"
    elif sys.platform.startswith("win"):
        name = "windows"
    else:
        raise PortError(f"no MIDI API known for {sys.platform}; set {API_ENV}")
    return Api(name, virtual=name != "windows")


_backend = None


def backend():
    """The mido backend for the chosen API (made once)."""
    global _backend
    if _backend is None:
        import mido

        _backend = mido.Backend(f"mido.backends.rtmidi/{_APIS[choose_api().name]}", load=True)
    return _backend


def list_ports() -> tuple[list[str], list[str]]:
    """(inputs, outputs): the names of ports melody-lc can read from and send to."""
    b = backend()
    return list(dict.fromkeys(b.get_input_names())), list(dict.fromkeys(b.get_output_names()))


def _find(name: str, names: list[str], what: str) -> str:
    if name in names:
        return name
    hits = [n for n in names if name.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        known = ", ".join(repr(n) for n in names) or "none"
        raise PortError(f"no MIDI {what} port named {name!r} (there are: {known})")
    raise PortError(
        f"{name!r} matches several MIDI {what} ports: {', '.join(repr(n) for n in hits)}; give more of the name"
    )


def open_output(name: str | None = None, virtual_name: str = DEFAULT_PORT):
    """An existing output port matched by (part of) its ``name``, or with no name a new virtual port
    called ``virtual_name`` that a DAW can take as a MIDI input."""
    api = choose_api()
    b = backend()
    try:
        if name is None:
            if not api.virtual:
                raise PortError(
                    "Windows has no virtual MIDI ports: create one with loopMIDI (or similar) and "
                    "give its name with --port"
                )
            port = b.open_output(virtual_name, client_name=virtual_name)
            port._melody_lc_virtual = True
            return port
        return b.open_output(_find(name, list_ports()[1], "output"))
    except OSError as e:
        raise PortError(f"cannot open MIDI output {name or virtual_name!r}: {e}") from None


def open_input(name: str | None = None, virtual_name: str = DEFAULT_PORT + "-in", callback=None):
    """An existing input port matched by (part of) its ``name``, or with no name a new virtual input."""
    api = choose_api()
    b = backend()
    try:
        if name is None:
            if not api.virtual:
                raise PortError("Windows has no virtual MIDI ports: give an input port's name")
            port = b.open_input(virtual_name, client_name=virtual_name, callback=callback)
            port._melody_lc_virtual = True
            return port
        return b.open_input(_find(name, list_ports()[0], "input"), callback=callback)
    except OSError as e:
        raise PortError(f"cannot open MIDI input {name or virtual_name!r}: {e}") from None


class PortWatch:
    """Tells whether the peer of an output port opened by name is still there (the DAW quit, the
    device was unplugged). A virtual port is ours and lives as long as we do.

    It lists ports through one client made up front, and the live engine calls :meth:`alive`
    mid-step, when nothing is due: on a JACK server in its default asynchronous mode, making a
    client while MIDI is in flight corrupted events (2 of 800 note messages altered or lost). A
    synchronous server (``jackd -S``) lost none (benchmarks/jack_delivery.py).
    """

    def __init__(self, port) -> None:
        import rtmidi

        self.port = port
        self.virtual = bool(getattr(port, "_melody_lc_virtual", False))
        self.probe = (
            None
            if self.virtual
            else rtmidi.MidiOut(getattr(rtmidi, f"API_{_APIS[choose_api().name]}"), name="melody-lc-watch")
        )

    def alive(self) -> bool:
        if self.virtual:
            return True
        try:
            return self.port.name in self.probe.get_ports()
        except Exception:  # noqa: BLE001 - the MIDI system itself went away
            return False

    def close(self) -> None:
        if self.probe is not None:
            self.probe.delete()
            self.probe = None
