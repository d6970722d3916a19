"""The processor API (version 1): what a MIDI processor is, built in or from a plugin.

A processor takes timed MIDI events and returns timed MIDI events::

    from melody_lc.chain import Param, Processor

    class Octaver(Processor):
        name = "octaver"
        summary = "adds a note an interval above every note"
        params = (Param("interval", "int", 12, min=-24, max=24, help="semitones"),)

        def process(self, events, ctx):
            out = list(events)
            for e in events:
                if e.is_note:
                    out.append(e.with_msg(note=min(127, max(0, e.msg.note + self.values["interval"]))))
            return out

An :class:`Event` is a ``mido`` channel message with a time in seconds on the host's clock
(``time.monotonic``). The host calls ``process`` with the events that reach the processor and, at
least once per sixteenth, with none (a tick), so a processor can emit events of its own (echoes,
releases). It may return events with later times (they are sent when due) but not earlier than
``ctx.now`` (those are sent at once). Events it keeps to release later should be released when
they fall before ``ctx.now + ctx.horizon``. ``self.values`` holds the parameters, already checked
against ``params``; ``reset()`` is called when the stream stops. System messages (clock, start,
stop) bypass processors.

A processor that raises, or takes longer than its time budget, is bypassed: its input passes
through unchanged from then on, and the host reports it. A processor that changes pitches must send
each note-off to the pitch its note-on went to (:class:`NoteMap` does this).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

import mido

from melody_lc.errors import UserError
from melody_lc.melody.pitches import note_number, pitch_class, pitch_class_name

API_VERSION = 1
PLUGIN_GROUP = "melody_lc.processors"


class ParamError(UserError, ValueError):
    """A parameter value that does not fit its declaration (the message says what was expected)."""


@dataclass(frozen=True)
class Duration:
    """A length of time: ``8ms``, ``0.5s``, or a note value ``1/16``, ``1/8.`` (dotted), ``1/8t``
    (triplet), ``2bars`` that follows the tempo."""

    amount: float
    unit: str  # "s" | "beats"
    text: str

    def seconds(self, bpm: float) -> float:
        return self.amount if self.unit == "s" else self.amount * 60.0 / bpm

    def __str__(self) -> str:
        return self.text


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|bars?|beats?)|(\d+)/(\d+)([.t]?))$")


def parse_duration(text: str) -> Duration:
    m = _DURATION.match(text.strip().lower())  # the pattern admits no nan or inf
    if not m:
        raise ParamError("expected a duration such as 8ms, 0.5s, 1/16, 1/8. or 1/8t")
    if m.group(1):
        x, unit = float(m.group(1)), m.group(2)
        if unit == "ms":
            return Duration(x / 1000, "s", text)
        if unit == "s":
            return Duration(x, "s", text)
        return Duration(x * (4 if unit.startswith("bar") else 1), "beats", text)
    num, den = int(m.group(3)), int(m.group(4))
    if den == 0:
        raise ParamError("a note value needs a denominator above 0")
    beats = Fraction(4 * num, den) * {"": 1, ".": Fraction(3, 2), "t": Fraction(2, 3)}[m.group(5)]
    return Duration(float(beats), "beats", text)


TYPES = ("int", "float", "bool", "str", "choice", "duration", "note", "key", "path")


@dataclass(frozen=True)
class Param:
    """A declared parameter: ``type`` is one of int, float, bool, str, choice (one of ``choices``),
    duration (:class:`Duration`), note (C4 or a MIDI number -> int), key (a pitch class such as
    F# -> 0..11), path (a file, relative to the chain file)."""

    name: str
    type: str
    default: object = None  # None: required
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise TypeError(f"parameter {self.name!r}: type {self.type!r} is not one of {', '.join(TYPES)}")

    @property
    def required(self) -> bool:
        return self.default is None

    def expected(self) -> str:
        """What a value must look like, in words (for errors and `melody-lc plugins`)."""
        words = {
            "int": "a whole number",
            "float": "a number",
            "bool": "yes or no",
            "str": "a word",
            "duration": "a duration (8ms, 0.5s, 1/16)",
            "note": "a note (C4 or 60)",
            "key": "a key (C, F#, Bb)",
            "path": "a file path",
            "choice": "one of " + ", ".join(self.choices),
        }[self.type]
        if self.type == "duration":  # its amount is in seconds or beats: only 'above 0' reads well
            return words + (" above 0" if (self.min or 0) > 0 else "")
        if self.min is not None and self.max is not None:
            words += f" from {self.min:g} to {self.max:g}"
        elif self.min is not None:
            words += f" of at least {self.min:g}"
        elif self.max is not None:
            words += f" of at most {self.max:g}"
        return words

    def default_value(self):
        """The default as a value (defaults may be written as text: ``"1/16"``, ``"10ms"``)."""
        if isinstance(self.default, str) and self.type not in ("str", "path"):
            return self.parse(self.default)
        return self.default

    def parse(self, text: str):
        """The value of ``text``; raises :class:`ParamError` saying what was expected."""
        t = text.strip()
        try:
            if self.type == "int":
                value = int(t)
            elif self.type == "float":
                value = float(t)
                if not math.isfinite(value):
                    raise ValueError
            elif self.type == "bool":
                if t.lower() not in ("yes", "no", "true", "false", "on", "off", "1", "0"):
                    raise ValueError
                value = t.lower() in ("yes", "true", "on", "1")
            elif self.type == "choice":
                if t.lower() not in self.choices:
                    raise ValueError
                value = t.lower()
            elif self.type == "duration":
                value = parse_duration(t)
            elif self.type == "note":
                value = note_number(t)
                if value is None or not 0 <= value <= 127:
                    raise ValueError
            elif self.type == "key":
                value = pitch_class(t)
                if value is None:
                    raise ValueError
            else:  # str, path
                if not t:
                    raise ValueError
                value = t
        except (ValueError, KeyError):
            raise ParamError(f"{self.name}: expected {self.expected()}, found '{text}'") from None
        return self.check(value)

    def check(self, value):
        """``value`` (already of the right type) within the declared range."""
        x = value.amount if isinstance(value, Duration) else value
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            if (self.min is not None and x < self.min) or (self.max is not None and x > self.max):
                raise ParamError(f"{self.name}: expected {self.expected()}, found {format_value(self, value)}")
        return value


def format_value(param: Param, value) -> str:
    """``value`` as it is written in a chain file (the inverse of :meth:`Param.parse`)."""
    if param.type == "bool":
        return "yes" if value else "no"
    if param.type == "key":
        return pitch_class_name(value)
    if param.type == "note":
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Event:
    """A MIDI message at ``time`` (seconds on the host's monotonic clock)."""

    time: float
    msg: mido.Message

    @property
    def is_note(self) -> bool:
        return self.msg.type in ("note_on", "note_off")

    @property
    def is_note_on(self) -> bool:
        return self.msg.type == "note_on" and self.msg.velocity > 0

    @property
    def is_note_off(self) -> bool:
        return self.msg.type == "note_off" or (self.msg.type == "note_on" and self.msg.velocity == 0)

    def with_msg(self, **changes) -> Event:
        return Event(self.time, self.msg.copy(**changes))

    def at(self, time: float) -> Event:
        return Event(time, self.msg)


@dataclass
class Context:
    """What a processor knows of the stream when it is called.

    ``now`` is the host clock in seconds; ``bpm`` the tempo; :meth:`beat_at` / :meth:`time_at`
    convert between clock seconds and beats (quarter notes) counted from the start of the stream,
    so ``ctx.bar`` and ``ctx.beat`` place ``now`` in the bar."""

    now: float
    bpm: float
    origin: float  # clock time of beat ``origin_beat``
    origin_beat: float = 0.0
    horizon: float = 0.05  # the next call comes within this many seconds: release what falls before
    chain: str = ""

    def beat_at(self, t: float) -> float:
        return self.origin_beat + (t - self.origin) * self.bpm / 60.0

    def time_at(self, beat: float) -> float:
        return self.origin + (beat - self.origin_beat) * 60.0 / self.bpm

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def beat(self) -> float:
        """Beats since the stream began, at ``now``."""
        return self.beat_at(self.now)

    @property
    def bar(self) -> int:
        """The bar (0-based, 4/4) that ``now`` is in."""
        return int(self.beat // 4)

    def seconds(self, d: Duration) -> float:
        return d.seconds(self.bpm)


class Processor:
    """Base class of a processor. Class attributes: ``name`` (as written in a chain file),
    ``summary`` (one line), ``params`` (a tuple of :class:`Param`), ``kind`` ("transform" here;
    "source" and "sink" are the host's own), ``api_version`` (the processor API it was written
    for), ``budget`` (seconds a call may take before the processor is bypassed)."""

    name = ""
    summary = ""
    params: tuple[Param, ...] = ()
    kind = "transform"
    api_version = API_VERSION
    budget = 0.005

    def __init__(self, **values) -> None:
        self.values = values

    def process(self, events: list[Event], ctx: Context) -> list[Event]:
        return events

    def reset(self) -> None:
        """The stream stopped: forget notes in flight."""

    def close(self) -> None:
        """The processor is done for good (its chain was closed): end work of its own, such as a
        thread, before the host exits. Called once; ``process`` is not called after it."""

    @classmethod
    def check_values(cls, values: dict) -> str | None:
        """What is wrong with these values taken together (each one is already checked against its
        declaration), or None. Called before anything runs; override for rules across parameters."""
        return None

    def lookahead(self, bpm: float) -> float:
        """Seconds this processor may move an event earlier: the host delays the chain's sources by
        the sum of them, as a DAW compensates a plugin's delay (humanize declares its timing)."""
        return 0.0

    @classmethod
    def declared(cls) -> dict[str, Param]:
        return {p.name: p for p in cls.params}


@dataclass
class NoteMap:
    """Remembers what each note-on became, so its note-off ends exactly that, even when the mapping
    (a key, an interval) changed while the note sounded, and keeps each note's length when its
    note-on was moved in time. ``on(event, outs)`` records the note-ons the input note-on became;
    ``off(event)`` returns their note-offs (the note-off itself when its note-on was never seen).
    A pitch struck again before it ended (an echo, a held key) pairs first-in, first-out."""

    sounding: dict[tuple[int, int], list[tuple[float, list[Event]]]] = field(default_factory=dict)

    def on(self, event: Event, outs: list[Event]) -> list[Event]:
        key = (event.msg.channel, event.msg.note)
        self.sounding.setdefault(key, []).append((event.time, [o for o in outs if o.is_note_on]))
        return outs

    def off(self, event: Event) -> list[Event]:
        key = (event.msg.channel, event.msg.note)
        queue = self.sounding.get(key)
        if not queue:
            return [event]
        t_on, ons = queue.pop(0)
        if not queue:
            del self.sounding[key]
        return [
            Event(
                max(o.time, event.time + (o.time - t_on)),
                mido.Message("note_off", channel=o.msg.channel, note=o.msg.note, velocity=0),
            )
            for o in ons
        ]

    def clear(self) -> None:
        self.sounding.clear()
