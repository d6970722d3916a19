"""Every processor by name: the host's sources and sinks, the built-in transforms, and plugins.

Plugins are found through the entry-point group ``melody_lc.processors``; each entry point names
a :class:`Processor` subclass. A plugin that fails to import, declares another API version, or
declares its parameters badly is listed with the reason and never runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from melody_lc.chain.api import API_VERSION, PLUGIN_GROUP, Param, Processor
from melody_lc.chain.builtin import TRANSFORMS


class Generator(Processor):
    name = "generator"
    kind = "source"
    summary = (
        "constrained melodies from the model, phrase after phrase (the latent walk of `stream`); "
        "the rules' open parameters are set by name, e.g. tonic=G (unset: drawn once)"
    )
    open_params = True  # also takes the open parameters of its rules file, by name
    params = (
        Param("rules", "path", help="the rules file"),
        Param("channel", "int", 1, min=1, max=16),
        Param("velocity", "int", 90, min=1, max=127),
        Param("temperature", "float", 0.5, min=0, max=2),
        Param("variation", "float", 0.35, min=0, max=1),
        Param("seed", "int", 0, min=0),
    )

    @staticmethod
    def source(link, rack, runner):
        from melody_lc.chain.sources import generator_source

        return generator_source(link, rack.resources(link), runner, log=rack.log)


class Input(Processor):
    name = "input"
    kind = "source"
    summary = "what is played into a MIDI input port"
    params = (
        Param("port", "str", "", help="an existing input port (part of its name will do)"),
        Param("virtual", "str", "", help="or open a virtual input of this name (default melody-lc-in)"),
    )

    @staticmethod
    def source(link, rack, runner):
        from melody_lc.chain.sources import InputSource

        src = InputSource(link, runner)
        src.open()  # now, so a missing port is reported before anything plays
        return src


class FileLoop(Processor):
    name = "file"
    kind = "source"
    summary = "a .mid file played in tempo, looped (its length rounded up to whole bars)"
    params = (Param("path", "path", help="the .mid file"), Param("loop", "bool", True))

    @staticmethod
    def source(link, rack, runner):
        from melody_lc.chain.sources import FileSource

        return FileSource(link, runner, rack.loops[link.values["path"]])


class Out(Processor):
    name = "out"
    kind = "sink"
    summary = "sends to a MIDI output port (default: a virtual port named melody-lc), and can record"
    params = (
        Param("port", "str", "", help="an existing output port (part of its name will do)"),
        Param("virtual", "str", "", help="or open a virtual output of this name (default melody-lc)"),
        Param("channel", "int", 0, min=0, max=16, help="send everything on this channel (0: as it comes)"),
        Param("record", "path", "", help="also write what was sent to this .mid file"),
    )

    @staticmethod
    def recording(link) -> str | None:
        return link.values["record"] or None

    @staticmethod
    def sink(link, rack):
        from melody_lc.chain.runner import Sink

        port, lock = rack.port(link)
        return Sink(port, lock, link.values["channel"], link.values["record"] or None)


class Record(Processor):
    name = "record"
    kind = "sink"
    summary = "writes what reaches it to a .mid file when the stream stops"
    params = (Param("path", "path", help="the .mid file"),)

    @staticmethod
    def recording(link) -> str | None:
        return link.values["path"]

    @staticmethod
    def sink(link, rack):
        from melody_lc.chain.runner import Sink

        return Sink(record=link.values["path"])


class SynthSink(Out):  # records as out(...) does
    name = "synth"
    summary = "sounds through melody-lc's built-in General MIDI synth (no DAW needed), and can record"
    params = (
        Param("program", "int", 0, min=0, max=127, help="General MIDI program (default 0, piano)"),
        Param("soundfont", "str", "", help="a sound font by path or by name (default: TimGM6mb)"),
        Param("record", "path", "", help="also write what was sent to this .mid file"),
    )

    @staticmethod
    def sink(link, rack):
        from melody_lc.chain.runner import Sink

        port, lock = rack.synth(link)
        return Sink(port, lock, 0, link.values["record"] or None)


HOST: tuple[type[Processor], ...] = (Generator, Input, FileLoop, Out, Record, SynthSink)


@dataclass(frozen=True)
class Entry:
    cls: type[Processor]
    origin: str  # "built in" or "plugin <module>"


def _check_declaration(cls) -> None:
    if not isinstance(cls, type) or not issubclass(cls, Processor):
        raise TypeError("an entry point must name a melody_lc.chain.Processor subclass")
    if getattr(cls, "api_version", None) != API_VERSION:
        raise TypeError(
            f"written for processor API {getattr(cls, 'api_version', None)}; this melody-lc has API {API_VERSION}"
        )
    if not cls.name or not cls.name.isidentifier():
        raise TypeError(f"name {cls.name!r}: a processor needs a name that is one word")
    if cls.kind != "transform":
        raise TypeError("plugins are transforms (kind = 'transform')")
    if not all(isinstance(p, Param) for p in cls.params):
        raise TypeError("params must be a tuple of melody_lc.chain.Param")
    for p in cls.params:
        if p.default is not None:
            p.check(p.default_value())


def load_plugins() -> tuple[dict[str, Entry], list[tuple[str, str]]]:
    """Processors from installed plugins, and (entry point, reason) for each that failed to load."""
    from importlib.metadata import entry_points

    builtin = {c.name for c in HOST + TRANSFORMS}
    found, failed = {}, []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            cls = ep.load()
            _check_declaration(cls)
            if cls.name in builtin:
                raise TypeError(f"'{cls.name}' is a built-in processor's name")
            found[cls.name] = Entry(cls, f"plugin {cls.__module__}")
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the host
            failed.append((f"{ep.name} = {ep.value}", f"{type(e).__name__}: {e}"))
    return found, failed


def registry() -> tuple[dict[str, Entry], list[tuple[str, str]]]:
    """(name -> Entry for every processor, failed plugins)."""
    table = {c.name: Entry(c, "built in") for c in HOST + TRANSFORMS}
    plugins, failed = load_plugins()
    return {**table, **plugins}, failed
