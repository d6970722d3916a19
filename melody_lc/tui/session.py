"""What the terminal UI plays with, without the UI: one live session of the engine.

    session = LiveSession(model, "rules/c_major_busy.rules", LiveSettings(bpm=100), find_fit=...)
    session.play(); session.set_bpm(110); session.step_value("tonic", +1); session.capture(4)
    session.close()                                       # stop, panic, close the ports

The session owns the output (and input) ports, the phrase maker (the latent walk, kept across
play and stop) and a :class:`LiveEngine` while playing. Every change that the engine can take on
the fly (tempo, channel, temperature, open parameters, rules, hold, mutate) goes to the running
engine and takes effect at the next phrase (tempo: the next pulse); a change of clock mode or port
restarts the stream. The rules file is watched: :meth:`check_rules_file` reloads it when it
changes, and a file with errors leaves the old rules playing. Keys and widgets live in ``app.py``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melody_lc.choices import CLOCKS
from melody_lc.melody.pitches import format_open_value
from melody_lc.midi.files import next_take, write_phrases
from melody_lc.midi.live import LiveConfig, LiveEngine, PhraseRecord
from melody_lc.midi.maker import PhraseMaker
from melody_lc.midi.ports import DEFAULT_PORT, PortError, PortWatch, open_input, open_output
from melody_lc.rules import RulesError, RuleSet
from melody_lc.rules.plan import Plan, Section, load_plan
from melody_lc.tui.chains import ChainControls


@dataclass
class LiveSettings:
    bpm: float = 120.0
    channel: int = 0  # 0-15 (shown as 1-16)
    velocity: int = 90
    clock: str = "internal"  # internal | send | follow
    temperature: float = 0.5
    variation: float = 0.35
    output: str | None = None  # an existing output port; None opens a virtual one named port_name
    port_name: str = DEFAULT_PORT
    input: str | None = None  # call and response from this input ('virtual': a port named melody-lc-in)
    clock_input: str | None = None  # follow mode: the DAW's clock (default: input, else a virtual one)
    capture_last: int = 4  # 'capture last N phrases'
    seed: int = 0
    enforce: bool = True  # decode under the rules' constraints and verify (False: the raw output)
    synth: bool = False  # also sound through the built-in synth (melody_lc/audio)
    soundfont: str | None = None  # its sound font (None: the default, audio/soundfonts.py)
    program: int | None = None  # its GM program (None: as the stream's program changes say, else piano)
    audio_driver: str | None = None  # FluidSynth's audio driver (None: JACK where it runs, else the default)


def value_text(rules: RuleSet, name: str, value: float) -> str:
    """How an open parameter's value reads: a note name for a tonic, a number otherwise."""
    return format_open_value(name, rules.open.get(name), value)


def default_values(rules: RuleSet, keep: dict | None = None) -> dict:
    """A value for each open parameter: kept from ``keep`` where it still fits, else the first
    category or the middle of the range."""
    out = {}
    for name, spec in rules.open.items():
        old = (keep or {}).get(name)
        if spec[0] == "category":
            out[name] = int(old) % spec[1] if old is not None else 0
        else:
            lo, hi = spec[1], spec[2]
            out[name] = float(np.clip(old, lo, hi)) if old is not None else float(round((lo + hi) / 2))
    return out


class LiveSession(ChainControls):
    """``find_fit(rules) -> Fitted | None`` looks a fit up without fitting (the UI fits in a worker
    when it returns None); ``log(message)`` may be called from any thread."""

    def __init__(
        self,
        model,
        rules_path: str | os.PathLike,
        settings: LiveSettings | None = None,
        values: dict | None = None,
        find_fit: Callable | None = None,
        captures: str | os.PathLike = "captures",
        log: Callable[[str], None] | None = None,
        chains=None,
        prepare: Callable | None = None,
    ) -> None:
        self.model, self.settings = model, settings or LiveSettings()
        self.chains = chains  # a ChainFile: the stream plays through its processors (see play)
        self.prepare = prepare  # rules path -> (rules, model, fitted), for the chains' other generators
        self.rack = None
        self.rules_path = Path(rules_path)
        self.find_fit = find_fit or (lambda rules: None)
        self.captures = Path(captures)
        self.log = log or (lambda s: None)
        # A broken file at start is the caller's error to report. A file of phrase sections is a
        # plan: ``rules`` then lists every rule of the file, and each phrase is held to its own.
        self.plan = load_plan(self.rules_path)
        self.rules = self.plan.every_rule()
        self.rules_error: str | None = None
        self.pending_rules: RuleSet | None = None  # parsed, waiting for its fit
        self.pending_plan: Plan | None = None  # a plan whose sections wait for their fits, one by one
        self.fits: dict = {}  # the fit of each section of a plan, by its rules' digest
        self._mtime = self._stat()
        first = self.plan.at(0).rules
        if self.plan.sectioned:
            self.pending_rules = self._take_fits(self.plan)
            self.pending_plan = self.plan if self.pending_rules is not None else None
            self.fitted = self.fits.get(first.digest())
        else:
            self.fitted = self.find_fit(self.rules)
        self.values = default_values(self.rules, values)
        self.maker = PhraseMaker(
            model,
            first,
            self.fitted,
            self.values or None,
            self.settings.temperature,
            self.settings.variation,
            self.settings.seed,
            self.settings.enforce,
            plan=self.plan if self.plan.sectioned and self.pending_plan is None else None,
            fits=self.fits,
        )
        self.engine: LiveEngine | None = None
        self.out = None  # a Tee: the MIDI port, and the built-in synth while it is on
        self.synth = None  # audio.port.SynthPort, made when first switched on
        self.inputs: list = []
        self.watch: PortWatch | None = None
        self.history: list[PhraseRecord] = []  # every phrase played, over every play
        self.last_capture: tuple[Path, list[PhraseRecord]] | None = None
        self.lock = threading.RLock()

    # -- ports and the stream ----------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self.engine is not None and not self.engine.stop_event.is_set()

    @property
    def output_name(self) -> str:
        lead = self.lead_chain
        if lead is not None:
            return f"chain {lead} -> {self._spec(lead).sink.text()}"
        return self.settings.output or f"{self.settings.port_name} (virtual)"

    def _open_output(self) -> None:
        if self.out is None:
            from melody_lc.audio.port import Tee

            if self.settings.synth:
                self._open_synth()
            midi = open_output(self.settings.output, virtual_name=self.settings.port_name)
            self.out = Tee(midi, *([self.synth] if self.synth is not None else []))
            self.watch = PortWatch(midi)

    def _open_synth(self) -> None:
        """The built-in synth, beside the MIDI port. Audio problems raise :class:`AudioError`."""
        if self.synth is None:
            from melody_lc.audio.port import SynthPort

            s = self.settings
            self.synth = SynthPort(s.soundfont, s.program, s.audio_driver)
            if self.out is not None:
                self.out.ports.append(self.synth)

    def toggle_synth(self) -> bool:
        """The built-in synth on or off (off: muted, every note it sounds ended); returns whether on.
        A chain file's chains sound through their own sinks (``synth(...)`` there)."""
        with self.lock:
            if self.chains is not None:
                self.log("the chains sound through their sinks: give a chain a synth(...) sink in its file")
                return False
            on = not self.settings.synth
            if on and self.synth is None:
                self._open_synth()
            elif self.synth is not None:
                self.synth.muted = not on
            self.settings.synth = on
            self.log(f"built-in synth {'on (' + self.synth.driver + ')' if on else 'off'}")
            return on

    def _open_inputs(self, engine: LiveEngine) -> None:
        s = self.settings
        names = {n for n in (s.input, (s.clock_input or s.input or "virtual") if s.clock == "follow" else None) if n}
        for name in sorted(names):
            self.inputs.append(open_input(None if name == "virtual" else name, callback=engine.on_message))

    def _close_inputs(self) -> None:
        for p in self.inputs:
            p.close()
        self.inputs = []

    @property
    def lead_chain(self) -> str | None:
        """The chain the session's own stream plays through: the first whose source is a generator."""
        if self.chains is None:
            return None
        return next((c.name for c in self.chains.chains if c.source.name == "generator"), None)

    def play(self) -> None:
        """Start streaming (a no-op while playing). Port problems raise :class:`PortError`."""
        with self.lock:
            if self.playing:
                return
            self._end_engine()
            s = self.settings
            config = LiveConfig(bpm=s.bpm, channel=s.channel, velocity=s.velocity, clock=s.clock)
            if self.chains is not None:
                self._play_chains(config)
                return
            self._open_output()
            engine = LiveEngine(self.maker, self.out, config, log=self.log, alive=self.watch.alive)
            try:
                self._open_inputs(engine)
            except PortError:
                self._close_inputs()
                raise
            self.engine = engine
            engine.start()
            self.log(
                f"playing to {self.out.name!r} at {s.bpm:g} bpm, clock {s.clock}"
                + (" (waiting for the DAW's start)" if s.clock == "follow" else "")
            )

    def _play_chains(self, config: LiveConfig) -> None:
        """The stream through the chain file: the session's generator is the lead chain's source
        (or, with no generator chain, plays to the session's port beside them), on the chains' tempo."""
        from melody_lc.chain.host import Rack
        from melody_lc.chain.sources import EngineSource

        made = {}

        def lead_source(runner):
            made["engine"] = LiveEngine(self.maker, runner, config, clock=runner.clock, log=self.log)
            return EngineSource(made["engine"])

        lead = self.lead_chain
        rack = Rack(
            self.chains, self.prepare, bpm=self.settings.bpm, log=self.log, sources={lead: lead_source} if lead else {}
        )
        if lead is None:
            self._open_output()
            made["engine"] = LiveEngine(self.maker, self.out, config, log=self.log, alive=self.watch.alive)
            rack.sources["(session)"] = EngineSource(made["engine"])
        self.rack, self.engine = rack, made["engine"]
        rack.start()
        self.log(
            f"playing {self.chains.path.name}: {len(rack.runners)} chain{'s' if len(rack.runners) > 1 else ''} "
            f"at {rack.tempo.bpm:g} bpm" + (f"; the keys steer chain {lead}" if lead else "")
        )

    def stop(self) -> None:
        """Stop with panic: every sounding note ends, then All Notes Off and All Sound Off."""
        with self.lock:
            if self.engine is not None:
                self._end_engine()
                self.log("stopped")

    def _end_engine(self) -> None:
        if self.rack is not None:
            self.rack.stop()  # the session's engine with the rest: every chain ends its notes
            self.rack.close()
            self.rack = None
        if self.engine is not None:
            self.engine.stop()
            self.history.extend(self.engine.played)
            self.engine = None
            self._close_inputs()

    def toggle(self) -> None:
        self.stop() if self.playing else self.play()

    def panic(self) -> None:
        """The panic key: stop at once, every note off on every channel used."""
        with self.lock:
            self._end_engine()
            self.log("panic: all notes off")

    def _restart(self) -> None:
        if self.playing:
            self.stop()
            self.play()

    def close(self) -> None:
        """Stop (with panic) and close every port: the app calls this on every way out."""
        with self.lock:
            self._end_engine()
            for p in [self.watch, self.out if self.out is not None else self.synth]:  # the Tee holds the synth
                if p is not None:
                    try:
                        p.close()
                    except Exception:  # noqa: BLE001, S110 - a port that already failed
                        pass
            self.out = self.watch = self.synth = None

    # -- settings that apply on the fly ------------------------------------------------------------
    def set_bpm(self, bpm: float) -> None:
        self.settings.bpm = float(np.clip(bpm, 20, 999))  # as `stream --bpm` allows
        if self.rack is not None:
            self.rack.set_bpm(self.settings.bpm)  # one tempo for every chain and the session's stream
        elif self.playing and self.settings.clock != "follow":
            self.engine.set_bpm(self.settings.bpm)

    def set_channel(self, channel: int) -> None:
        """From the next phrase on (notes sounding on the old channel still end there)."""
        self.settings.channel = int(channel) % 16
        if self.engine is not None:
            self.engine.config.channel = self.engine.transport.channel = self.settings.channel

    def set_temperature(self, t: float) -> None:
        self.settings.temperature = round(float(np.clip(t, 0.0, 2.0)), 2)
        self._update(temperature=self.settings.temperature)

    def cycle_clock(self) -> str | None:
        if self.chains is not None:
            self.log("chains play on melody-lc's own clock")
            return None
        self.settings.clock = CLOCKS[(CLOCKS.index(self.settings.clock) + 1) % len(CLOCKS)]
        self._restart()
        return self.settings.clock

    def set_output(self, name: str | None) -> None:
        """An existing output port by name, or None for melody-lc's own virtual port."""
        with self.lock:
            was = self.playing
            self.close()
            self.settings.output = name
            if was:
                self.play()

    def set_input(self, name: str | None) -> None:
        """Call and response from ``name`` ('virtual' for melody-lc-in), or None for no input."""
        self.settings.input = name
        self._restart()

    def step_value(self, name: str, delta: int) -> float:
        """Move an open parameter (a tonic by semitones, a range by 1) and apply it from the next phrase."""
        spec = self.rules.open[name]
        v = self.values[name]
        v = (int(v) + delta) % spec[1] if spec[0] == "category" else float(np.clip(v + delta, spec[1], spec[2]))
        return self.set_value(name, v)

    def set_value(self, name: str, value: float) -> float:
        self.values = {**self.values, name: value}
        self._update(values=dict(self.values))
        self.log(f"{name} = {value_text(self.rules, name, value)} from the next phrase")
        return value

    def _update(self, **changes) -> None:
        self.maker.update(**changes)
        if self.engine is not None:
            self.engine.changed()

    # -- phrases -----------------------------------------------------------------------------------
    def current(self) -> PhraseRecord | None:
        return self.engine.current() if self.playing else None

    def upcoming(self) -> PhraseRecord | None:
        return self.engine.upcoming() if self.playing else None

    def played(self) -> list[PhraseRecord]:
        return self.history + (list(self.engine.played) if self.engine is not None else [])

    @property
    def holding(self) -> bool:
        return self.maker.held is not None

    def toggle_hold(self) -> bool:
        """Loop the phrase now playing (from the next phrase), or let the walk go on again."""
        if self.holding:
            self.maker.hold(None)
            self.log("hold off: the walk goes on")
        else:
            rec = self.current() or (self.played()[-1] if self.played() else None)
            if rec is None:
                self.log("nothing to hold yet")
                return False
            self.maker.hold((rec.tokens, rec.info))
            self.log(f"holding phrase {rec.index + 1}")
        if self.engine is not None:
            self.engine.changed()
        return self.holding

    def mutate(self, amount: float = 0.15) -> None:
        """The next phrase: a small latent step from the phrase now playing."""
        rec = self.current() or (self.played()[-1] if self.played() else None)
        z = rec.info.get("z") if rec is not None else None
        if z is None:  # a held or answered phrase has no latent of its own: step from the walk
            z = self.maker.z
        self.maker.mutate(z, amount)
        if self.engine is not None:
            self.engine.changed()
        self.log(f"mutate: the next phrase is a small step ({amount:g}) from this one")

    def capture(self, last: int = 1) -> Path | None:
        """Write the phrase now playing (``last`` = 1) or the last N phrases played, back to back,
        to the next ``captures/take-NNN.mid``."""
        played = self.played()
        if not played:
            self.log("nothing played yet: nothing to capture")
            return None
        cur = self.current()
        end = next((k + 1 for k, r in enumerate(played) if r is cur), len(played))
        recs = played[max(0, end - last) : end]
        path = next_take(self.captures)
        write_phrases(
            [r.tokens for r in recs],
            path,
            bpm=self.settings.bpm,
            channel=self.settings.channel,
            velocity=self.settings.velocity,
        )
        self.last_capture = (path, recs)
        self.log(f"captured {len(recs)} phrase{'s' if len(recs) > 1 else ''} to {path}")
        return path

    def satisfaction(self, rec: PhraseRecord | None) -> list[bool | None] | None:
        """Each rule of the rules now active, met by ``rec`` or not (with the values it was made
        for); in a plan, None for the rules of other sections than the phrase's."""
        if rec is None:
            return None
        rules = self.rules
        if self.plan.sectioned:  # the phrase's own rules (phrase 1's while the plan waits for its fits)
            rules = self.plan.at(rec.index if "section" in rec.info else 0).rules
            if rules is None:  # a morph, with no rules shared by every phrase
                return [None] * len(self.rules)
        values = rec.info.get("values") or (self.values if rules.open else None)
        try:
            cond = rules.fixed_conditions(1, **values) if rules.open else None
            ok = rules.satisfied(np.asarray(rec.tokens)[None], cond)[0].tolist()
        except KeyError:  # made under rules with other open parameters
            return None
        if rules is self.rules:
            return ok
        by_line = {r.line: good for r, good in zip(rules.rules, ok)}
        return [by_line.get(r.line) for r in self.rules.rules]

    # -- a plan's fits -----------------------------------------------------------------------------
    def _take_fits(self, plan: Plan) -> RuleSet | None:
        """Takes the fits of the plan's sections from the caches; returns the first section's rules
        that still have none (the app fits it, then calls :meth:`apply_rules`)."""
        for rs in plan.rulesets():
            if rs.digest() not in self.fits:
                fitted = self.find_fit(rs)
                if fitted is None:
                    return rs
                self.fits[rs.digest()] = fitted
        return None

    def _apply_plan(self, plan: Plan) -> None:
        first = plan.at(0).rules
        self.plan, self.pending_plan, self.pending_rules = plan, None, None
        self.rules, self.fitted = plan.every_rule(), self.fits.get(first.digest())
        self.values = default_values(self.rules, self.values)
        sectioned = plan if plan.sectioned else None
        self._update(
            rules=first,
            fitted=self.fitted,
            plan=sectioned,
            fits=dict(self.fits),
            values=dict(self.values) or None,
            held=None,
        )
        self.log(f"rules from {self.rules_path.name} play from the next phrase")

    # -- the rules file ----------------------------------------------------------------------------
    def _stat(self) -> float | None:
        try:
            st = os.stat(self.rules_path)
            return st.st_mtime_ns + st.st_size
        except OSError:
            return None

    def check_rules_file(self, force: bool = False) -> str | None:
        """Reload the rules file if it changed on disk. Returns None (unchanged), "error" (the old
        rules keep playing; :attr:`rules_error` says where and what), "applied", or "needs fit"
        (:attr:`pending_rules` waits for a fit; the old rules keep playing until :meth:`apply_rules`)."""
        stamp = self._stat()
        if not force and stamp == self._mtime:
            return None
        self._mtime = stamp
        try:
            plan = load_plan(self.rules_path)
        except RulesError as e:
            self.rules_error = str(e)
            self.log(f"rules not reloaded, the old ones keep playing: {e}")
            return "error"
        self.rules_error = None
        if plan.sectioned or self.plan.sectioned:
            return self._check_plan(plan, force)
        rules = plan.sections[0].rules
        if self.pending_rules is not None and rules.digest() == self.pending_rules.digest():
            return None  # the same rules already wait for their fit (a file saved in two writes)
        if rules.digest() == self.rules.digest() and self.pending_rules is None:
            self.rules = rules  # the same meaning: comments, spacing, or another file saying the same
            return "applied" if force else None
        fitted = self.find_fit(rules)
        if fitted is None:
            self.pending_rules = rules
            self.log(f"{self.rules_path.name} changed: it needs a fit first; the old rules keep playing")
            return "needs fit"
        self.apply_rules(rules, fitted)
        return "applied"

    def _check_plan(self, plan: Plan, force: bool) -> str | None:
        """check_rules_file for a file of phrase sections (or one that had them)."""
        waiting = self.pending_plan
        if waiting is not None and plan.digest() == waiting.digest():
            return None  # the same plan already waits for its fits
        if plan.digest() == self.plan.digest() and waiting is None:
            self.plan, self.rules = plan, plan.every_rule()
            return "applied" if force else None
        self.pending_rules = self._take_fits(plan)
        if self.pending_rules is not None:
            self.pending_plan = plan
            self.log(
                f"{self.rules_path.name} changed: {self.pending_rules.section_words or 'it'} needs a fit first; the old rules keep playing"
            )
            return "needs fit"
        self._apply_plan(plan)
        return "applied"

    def switch_rules(self, path: str | os.PathLike) -> str | None:
        """Play another rules file (watched from now on); as :meth:`check_rules_file` answers."""
        self.rules_path, self.pending_rules, self.pending_plan = Path(path), None, None
        self._mtime = self._stat()
        return self.check_rules_file(force=True)

    def rules_files(self) -> list[Path]:
        """Rules files to switch to: those beside the current one, then the shipped examples."""
        from melody_lc.paths import shipped_dir

        found: dict[str, Path] = {}
        for folder in (self.rules_path.parent, shipped_dir("rules")):
            for p in sorted(folder.glob("*.rules")):
                found.setdefault(str(p.resolve()), p)
        return list(found.values())

    def apply_rules(self, rules: RuleSet, fitted) -> None:
        """Play ``rules`` from the next phrase (ends a hold). For a plan waiting for its fits,
        ``fitted`` is one section's: the plan plays once every section has one (until then
        :attr:`pending_rules` names the next to fit)."""
        if self.pending_plan is not None:
            self.fits[rules.digest()] = fitted
            self.pending_rules = self._take_fits(self.pending_plan)
            if self.pending_rules is None:
                self._apply_plan(self.pending_plan)
            return
        self.plan = Plan(str(self.rules_path), rules, [Section(0, 0, 1, rules)])
        self.rules, self.fitted, self.pending_rules = rules, fitted, None
        self.values = default_values(rules, self.values)
        self._update(rules=rules, fitted=fitted, plan=None, values=dict(self.values) or None, held=None)
        self.log(f"rules from {self.rules_path.name} play from the next phrase")
