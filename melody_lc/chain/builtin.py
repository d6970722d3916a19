"""The built-in transforms: scale snap, transpose, quantize, humanize, velocity curve, note length,
channel/program map, echo, and the constraint transform (``constrain.py``: latent gradient search
toward rules).

Each one follows the processor API in ``api.py`` exactly as a plugin would. Sources (generator,
input, file) and sinks (out, record) are the host's own and are declared in ``registry.py``.
"""

from __future__ import annotations

import mido
import numpy as np

from melody_lc.chain.api import Context, Event, NoteMap, Param, Processor
from melody_lc.chain.constrain import Constrain
from melody_lc.rules.kinds import MODES

SCALES = tuple(sorted(m.replace(" ", "_") for m in MODES))


def _clip_note(n: int) -> int:
    return int(min(127, max(0, n)))


class _OneToOne(Processor):
    """A transform that turns each note-on into one note-on (:meth:`note_on`) and sends each
    note-off to where its note-on went (a :class:`NoteMap`); other messages pass unchanged."""

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.notes = NoteMap()

    def note_on(self, e: Event, ctx: Context) -> Event:
        raise NotImplementedError  # each subclass says what a note-on becomes

    def note_off(self, e: Event, ctx: Context) -> list[Event]:
        return self.notes.off(e)

    def process(self, events, ctx):
        out = []
        for e in events:
            if e.is_note_on:
                out += self.notes.on(e, [self.note_on(e, ctx)])
            elif e.is_note_off:
                out += self.note_off(e, ctx)
            else:
                out.append(e)
        return out

    def reset(self) -> None:
        self.notes.clear()


class _PitchMap(_OneToOne):
    """A transform that maps each note to another pitch."""

    def pitch(self, note: int) -> int:
        raise NotImplementedError  # each subclass says where a pitch goes

    def note_on(self, e, ctx):
        return e.with_msg(note=_clip_note(self.pitch(e.msg.note)))


class ScaleSnap(_PitchMap):
    name = "scale"
    summary = "snaps every note to a scale (like a DAW's scale effect)"
    params = (
        Param("key", "key", 0, help="the tonic"),
        Param("scale", "choice", "major", choices=SCALES, help="the scale"),
        Param(
            "direction",
            "choice",
            "nearest",
            choices=("nearest", "up", "down"),
            help="where a note outside the scale goes (nearest: down on a tie)",
        ),
    )

    def pitch(self, note: int) -> int:
        degrees = {(self.values["key"] + d) % 12 for d in MODES[self.values["scale"].replace("_", " ")]}
        order = {"nearest": (0, -1, 1, -2, 2, -3, 3), "up": (0, 1, 2, 3), "down": (0, -1, -2, -3)}[
            self.values["direction"]
        ]
        for d in order:
            if (note + d) % 12 in degrees and 0 <= note + d <= 127:
                return note + d
        return note


class Transpose(_PitchMap):
    name = "transpose"
    summary = "moves every note by semitones and octaves"
    params = (Param("semitones", "int", 0, min=-48, max=48), Param("octaves", "int", 0, min=-4, max=4))

    def pitch(self, note: int) -> int:
        return note + self.values["semitones"] + 12 * self.values["octaves"]


class Quantize(_OneToOne):
    name = "quantize"
    summary = (
        "moves note starts toward a grid (never before they arrived: earlier only within a delay that "
        "humanize gives the chain)"
    )
    params = (
        Param("grid", "duration", "1/16", min=0.001, help="the grid"),
        Param("strength", "float", 100.0, min=0, max=100, help="percent of the way to the grid line"),
    )

    def note_on(self, e, ctx):
        grid = ctx.seconds(self.values["grid"]) * ctx.bpm / 60.0  # in beats
        target = ctx.time_at(round(ctx.beat_at(e.time) / grid) * grid)
        return e.at(max(e.time + (target - e.time) * self.values["strength"] / 100.0, ctx.now))


class Humanize(_OneToOne):
    name = "humanize"
    summary = (
        "random timing and velocity offsets, seeded (the chain is delayed by the timing so notes can move earlier)"
    )
    params = (
        Param("timing", "duration", "10ms", min=0, help="notes move up to this much either way"),
        Param("velocity", "int", 10, min=0, max=127, help="velocities move up to this much either way"),
        Param("seed", "int", 0, min=0),
    )

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.rng = np.random.default_rng(self.values["seed"])
        self.starts: dict[
            tuple[int, int], list[float]
        ] = {}  # when each sounding note-on went out (first in, first out)

    def lookahead(self, bpm: float) -> float:
        return self.values["timing"].seconds(bpm)

    def note_on(self, e, ctx):
        spread = ctx.seconds(self.values["timing"])
        t = max(ctx.now, e.time + float(self.rng.uniform(-spread, spread)))
        v = int(
            np.clip(e.msg.velocity + self.rng.integers(-self.values["velocity"], self.values["velocity"] + 1), 1, 127)
        )
        self.starts.setdefault((e.msg.channel, e.msg.note), []).append(t)
        return Event(t, e.msg.copy(velocity=v))

    def note_off(self, e, ctx):
        # Every note ends ``timing`` early (so at most 2 x timing shorter): its note-off can then
        # never land after the next note-on of the same pitch, however that one moves.
        starts = self.starts.get((e.msg.channel, e.msg.note))
        start = starts.pop(0) if starts else ctx.now
        return [
            o.at(max(e.time - ctx.seconds(self.values["timing"]), start + 0.001, ctx.now)) for o in self.notes.off(e)
        ]

    def reset(self) -> None:
        self.notes.clear()
        self.starts.clear()


class VelocityCurve(Processor):
    name = "velocity"
    summary = "a velocity curve: out = min + (max - min) * (in / 127) ^ curve, or one fixed velocity"
    params = (
        Param("curve", "float", 1.0, min=0.1, max=10, help="above 1 softer, below 1 louder"),
        Param("min", "int", 1, min=1, max=127),
        Param("max", "int", 127, min=1, max=127),
        Param("fixed", "int", 0, min=0, max=127, help="every note at this velocity (0: use the curve)"),
    )

    @classmethod
    def check_values(cls, values):
        return f"min ({values['min']}) is above max ({values['max']})" if values["min"] > values["max"] else None

    def process(self, events, ctx):
        v = self.values
        out = []
        for e in events:
            if e.is_note_on:
                vel = v["fixed"] or round(v["min"] + (v["max"] - v["min"]) * (e.msg.velocity / 127) ** v["curve"])
                out.append(e.with_msg(velocity=int(np.clip(vel, 1, 127))))
            else:
                out.append(e)
        return out


class NoteLength(Processor):
    name = "notelength"
    summary = "sets note lengths: a fixed length, or a minimum and a maximum (0: no limit)"
    params = (
        Param("length", "duration", "0ms", min=0, help="every note lasts this long (0: as played)"),
        Param("min", "duration", "0ms", min=0, help="shorter notes are held this long"),
        Param("max", "duration", "0ms", min=0, help="longer notes end after this long"),
    )

    @classmethod
    def check_values(cls, values):
        lo, hi = values["min"], values["max"]
        if lo.amount and hi.amount and lo.unit == hi.unit and lo.amount > hi.amount:
            return f"min ({lo}) is longer than max ({hi})"
        return None

    def __init__(self, **values) -> None:
        super().__init__(**values)
        # (channel, note) -> [when it started, whether its own note-off has come]
        self.sounding: dict[tuple[int, int], list] = {}
        self.pending: dict[tuple[int, int], Event] = {}  # the note-off this processor will send for it
        self.unanswered: dict[tuple[int, int], int] = {}  # notes it ended whose own note-offs are still to come

    def _limits(self, ctx) -> tuple[float, float]:
        fixed = ctx.seconds(self.values["length"])
        if fixed > 0:
            return fixed, fixed
        return ctx.seconds(self.values["min"]), ctx.seconds(self.values["max"]) or float("inf")

    def _off(self, key, t: float) -> Event:
        return Event(t, mido.Message("note_off", channel=key[0], note=key[1], velocity=0))

    def _ended_early(self, key) -> None:
        """This note ends before its own note-off came: that note-off will be dropped."""
        if not self.sounding[key][1]:
            self.unanswered[key] = self.unanswered.get(key, 0) + 1

    def process(self, events, ctx):
        lo, hi = self._limits(ctx)
        out = []
        for e in events:
            key = (e.msg.channel, e.msg.note) if e.is_note else None
            if e.is_note_on:
                if key in self.sounding:  # struck again: the earlier one ends now
                    out.append(self._off(key, e.time))
                    self._ended_early(key)
                    self.pending.pop(key, None)
                self.sounding[key] = [e.time, False]
                out.append(e)
                if hi < float("inf"):
                    self.pending[key] = self._off(key, e.time + hi)
            elif e.is_note_off:
                if key not in self.sounding or self.sounding[key][1]:
                    if self.unanswered.get(key):
                        self.unanswered[key] -= 1  # its note already ended here
                    else:
                        out.append(e)  # a note this processor never saw start: passed on, harmless
                    continue
                start = self.sounding[key][0]
                if e.time - start < lo:  # too short: it ends at the minimum
                    self.sounding[key][1] = True
                    self.pending[key] = self._off(key, start + lo)
                else:
                    del self.sounding[key]
                    self.pending.pop(key, None)
                    out.append(e)
            else:
                out.append(e)
        for key, off in list(self.pending.items()):  # release what falls before the next call
            if off.time <= ctx.now + ctx.horizon:
                del self.pending[key]
                self._ended_early(key)
                del self.sounding[key]
                out.append(off)
        return out

    def reset(self) -> None:
        self.sounding.clear()
        self.pending.clear()
        self.unanswered.clear()


class ChannelMap(Processor):
    name = "channel"
    summary = "moves messages to another MIDI channel, and can set its program (instrument) first"
    params = (
        Param("to", "int", 1, min=1, max=16, help="the channel to send on (1-16)"),
        Param("from", "int", 0, min=0, max=16, help="only messages on this channel (0: all)"),
        Param("program", "int", 0, min=0, max=128, help="a program change (1-128) sent first (0: none)"),
    )

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.sent_program = False

    def process(self, events, ctx):
        to, src, program = self.values["to"] - 1, self.values["from"], self.values["program"]
        out = []
        if program and not self.sent_program:
            out.append(Event(ctx.now, mido.Message("program_change", channel=to, program=program - 1)))
            self.sent_program = True
        for e in events:
            if hasattr(e.msg, "channel") and (src == 0 or e.msg.channel == src - 1):
                out.append(e.with_msg(channel=to))
            else:
                out.append(e)
        return out

    def reset(self) -> None:
        self.sent_program = False


class Echo(Processor):
    name = "echo"
    summary = "repeats each note after a delay, softer each time"
    params = (
        Param("delay", "duration", "1/8", min=0.001, help="time between repeats"),
        Param("repeats", "int", 2, min=1, max=16),
        Param("feedback", "float", 0.6, min=0.05, max=1.0, help="each repeat's velocity, times the one before"),
    )

    def __init__(self, **values) -> None:
        super().__init__(**values)
        self.delays: dict[tuple[int, int], list[float]] = {}  # the delay each sounding note was echoed at

    def process(self, events, ctx):
        out = list(events)
        for e in events:
            if not e.is_note:
                continue
            key = (e.msg.channel, e.msg.note)
            if e.is_note_on:  # the echoes of its note-off keep this delay, whatever the tempo does
                d = ctx.seconds(self.values["delay"])
                self.delays.setdefault(key, []).append(d)
            else:
                used = self.delays.get(key)
                d = used.pop(0) if used else ctx.seconds(self.values["delay"])
            for k in range(1, self.values["repeats"] + 1):
                if e.is_note_on:
                    v = max(1, round(e.msg.velocity * self.values["feedback"] ** k))
                    out.append(Event(e.time + k * d, e.msg.copy(velocity=v)))
                else:
                    out.append(Event(e.time + k * d, e.msg))
        return out

    def reset(self) -> None:
        self.delays.clear()


TRANSFORMS: tuple[type[Processor], ...] = (
    ScaleSnap,
    Transpose,
    Quantize,
    Humanize,
    VelocityCurve,
    NoteLength,
    ChannelMap,
    Echo,
    Constrain,
)
