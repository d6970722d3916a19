"""``melody-lc ports | stream``: constrained melodies to a MIDI port, in tempo."""

from __future__ import annotations

import argparse
import json
import sys
import time

from melody_lc.choices import CLOCKS
from melody_lc.cli import checks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ports", help="list MIDI input and output ports")
    p.add_argument("--json", action="store_true", help="print {inputs, outputs, api} as JSON")
    p.set_defaults(func=cmd_ports)

    s = sub.add_parser(
        "stream",
        help="stream constrained melodies to a MIDI port in tempo",
        description="Play melodies that follow a rules file into a MIDI port, phrase after phrase. "
        "By default melody-lc opens a virtual output port named 'melody-lc' for your DAW to take as "
        "a MIDI input. Ctrl-C stops it; every sounding note is ended first.",
    )
    _play_args(s)
    s.add_argument("--phrases", type=int, help="stop after this many 16-bar phrases (default: until Ctrl-C)")
    s.add_argument(
        "--record",
        metavar="OUT.mid",
        type=checks.out_file,
        help="write everything sent to this .mid file when the stream ends",
    )
    s.add_argument(
        "--status",
        metavar="FILE",
        help="write a JSON line per phrase (what was played, how far ahead it was ready) to FILE",
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_stream)

    v = sub.add_parser(
        "live",
        help="the terminal instrument: play, steer and capture constrained melodies",
        description="A terminal UI over the live stream: piano rolls of the phrase playing and the "
        "next one, each rule's state, open parameters, tempo, clock, ports, hold, mutate, capture, "
        "call and response. Press ? in the app for every key. The rules file is watched and "
        "reloaded when you save it.",
    )
    _play_args(v, rules_required=False)
    v.add_argument(
        "--chain",
        metavar="FILE.chain",
        help="play through the chains of this file: the first chain "
        "with a generator is steered by the keys (its rules, unless --rules is given); the others play "
        "beside it. The chains' processors can be bypassed, moved and edited live, and saved back",
    )
    v.set_defaults(bpm=None)  # the chain file's tempo, else 120
    v.add_argument(
        "--captures",
        metavar="DIR",
        type=checks.out_folder,
        default="captures",
        help="where captures go (default ./captures)",
    )
    v.add_argument(
        "--capture-last", type=int, default=4, metavar="N", help="phrases that 'capture last' writes (default 4)"
    )
    v.add_argument("--paused", action="store_true", help="open stopped (space plays)")
    v.set_defaults(func=cmd_live)


def _play_args(s: argparse.ArgumentParser, rules_required: bool = True) -> None:
    """The options ``stream`` and ``live`` share."""
    from melody_lc.cli.audio import driver_option, soundfont_option
    from melody_lc.cli.constrain import _enforce_option

    s.add_argument(
        "--rules",
        required=rules_required,
        metavar="RULES",
        help=None if rules_required else "the rules file (may come from --chain instead)",
    )
    s.add_argument("--bpm", type=float, default=120.0)
    s.add_argument(
        "--port",
        metavar="NAME",
        help="send to this existing output port (part of its name will do) instead of opening a virtual one",
    )
    s.add_argument("--port-name", default="melody-lc", help="name of the virtual port (default melody-lc)")
    s.add_argument(
        "--synth",
        action="store_true",
        help="sound through melody-lc's built-in synth (no DAW needed); stream: instead of a MIDI port, "
        "or beside the one --port names; live: beside the MIDI port ('a' switches it)",
    )
    s.add_argument("--program", type=int, help="the built-in synth's General MIDI program 0-127 (default 0, piano)")
    s.add_argument("--channel", type=int, default=1, help="MIDI channel 1-16 (default 1)")
    s.add_argument("--velocity", type=int, default=90)
    s.add_argument(
        "--clock",
        choices=CLOCKS,
        default="internal",
        help="internal: our own tempo; send: also send MIDI clock, start and stop (we are the master); "
        "follow: play to the clock, start, stop and song position of --clock-input",
    )
    s.add_argument(
        "--clock-input",
        metavar="NAME",
        help="input port carrying the DAW's clock for --clock follow "
        "(default: --input, or a new virtual input 'melody-lc-in')",
    )
    s.add_argument(
        "--input",
        metavar="NAME",
        help="call and response: listen to this input port ('virtual' opens "
        "one named melody-lc-in) and answer each phrase played into it",
    )
    soundfont_option(s)
    driver_option(s)
    s.add_argument("--temperature", type=checks.temperature, default=0.5)
    s.add_argument("--variation", type=float, default=0.35, help="how far each phrase moves from the last, 0..1")
    s.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="value of an open parameter, e.g. --set tonic=G",
    )
    s.add_argument("--seed", type=int, default=0)
    _enforce_option(s)
    s.add_argument(
        "--rounds",
        type=checks.positive_int,
        help="fitting rounds if the rules have no fit yet (default: FitConfig.rounds in melody_lc/engine/fit.py)",
    )
    s.add_argument("--quick", action="store_true", help="if the rules have no fit yet, a sketch fit (about a minute)")
    s.add_argument("--model", metavar="DIR")
    s.add_argument("--data", metavar="PATH")


def cmd_ports(args) -> int:
    from melody_lc.midi.ports import choose_api, list_ports

    api = choose_api()
    inputs, outputs = list_ports()
    if args.json:
        print(json.dumps({"api": api.name, "inputs": inputs, "outputs": outputs}))
        return 0
    print(f"MIDI API: {api.name}" + ("" if api.virtual else " (no virtual ports: use --port with an existing one)"))
    for title, names in (("inputs (melody-lc can listen to)", inputs), ("outputs (melody-lc can send to)", outputs)):
        print(f"{title}:")
        for n in names or ["(none)"]:
            print(f"  {n}")
    return 0


def _check(args) -> None:
    from melody_lc.cli import CLIError

    phrases, record = getattr(args, "phrases", None), getattr(args, "record", None)

    if not 1 <= args.channel <= 16:
        raise CLIError(f"--channel must be 1-16, got {args.channel}")
    if not 20 <= args.bpm <= 999:
        raise CLIError(f"--bpm must be 20-999, got {args.bpm:g}")
    if not 1 <= args.velocity <= 127:
        raise CLIError(f"--velocity must be 1-127, got {args.velocity}")
    if args.program is not None and not 0 <= args.program <= 127:
        raise CLIError(f"--program must be 0-127, got {args.program}")
    if phrases is not None and phrases < 1:
        raise CLIError(f"--phrases must be at least 1, got {args.phrases}")
    if not 0 <= args.variation <= 1:
        raise CLIError(f"--variation must be 0..1, got {args.variation:g}")
    if record and not record.lower().endswith((".mid", ".midi")):
        raise CLIError(f"--record {record}: expected a .mid file name")
    if getattr(args, "capture_last", 1) < 1:
        raise CLIError(f"--capture-last must be at least 1, got {args.capture_last}")


def prepare_plan(args, plan, model=None):
    """(phrase 1's rules, model, phrase 1's fit, every section's fit by its rules' digest), fitting
    what no cache has yet."""
    from melody_lc.cli.constrain import _prepare

    fits = {}
    for rs in plan.rulesets():
        _, model, fits[rs.digest()] = _prepare(args, model=model, rules=rs)
    first = plan.at(0).rules
    return first, model, fits[first.digest()], fits


def cmd_stream(args) -> int:
    from melody_lc.cli import CLIError
    from melody_lc.cli.constrain import _parse_values
    from melody_lc.fileio import atomic_path
    from melody_lc.midi.live import LiveConfig, LiveEngine, wait_for_follow_start
    from melody_lc.midi.maker import PhraseMaker
    from melody_lc.midi.ports import PortWatch, open_input
    from melody_lc.rules.plan import load_plan

    _check(args)
    plan = load_plan(args.rules)
    values = _parse_values(plan, args.set)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    ports, closers = [], []
    try:
        out = _stream_output(args)
        ports.append(out)
        rules, model, fitted, fits = prepare_plan(args, plan)
        maker = PhraseMaker(
            model, rules, fitted, values, args.temperature, args.variation, args.seed, args.enforce, plan, fits
        )
        config = LiveConfig(
            bpm=args.bpm, channel=args.channel - 1, velocity=args.velocity, clock=args.clock, phrases=args.phrases
        )
        watch = PortWatch(out)
        closers.append(watch)
        engine = LiveEngine(maker, out, config, log=say, alive=watch.alive)
        listen = args.input or (args.clock_input or "virtual" if args.clock == "follow" else None)
        names = {n for n in (args.input, args.clock_input if args.clock == "follow" else None) if n}
        if listen:
            for name in names or {"virtual"}:
                ports.append(open_input(None if name == "virtual" else name, callback=engine.on_message))
        say(
            f"streaming {args.rules} to {out.name!r} at {args.bpm:g} bpm, channel {args.channel}"
            + (f"; listening on {', '.join(repr(p.name) for p in ports[1:])}" if len(ports) > 1 else "")
            + "; Ctrl-C stops"
        )
        status = StatusFile(args.status, engine, say) if args.status else None
        try:
            engine.start()
            if args.clock == "follow":
                engine.log("waiting for the DAW's start (MIDI clock)")
                wait_for_follow_start(engine)
            while not engine.done.wait(0.1) and not engine.stop_event.is_set():
                engine.poll()
                if status is not None:
                    status.update()
        finally:
            engine.stop()
            time.sleep(0.05)  # let the MIDI system deliver the last messages before the port closes
            if status is not None:
                status.update()
                status.close()
            if args.record:
                with atomic_path(args.record) as tmp:
                    engine.recording().save(tmp)
                say(f"recorded {args.record}")
        if engine.error:
            raise CLIError(engine.error + " (stopped; every note was turned off)")
        return 0
    finally:
        for p in closers + ports:
            try:
                p.close()
            except Exception:  # noqa: BLE001, S110 - closing a port that already failed
                pass


def _stream_output(args):
    """Where ``stream`` plays: a MIDI port (named, or a virtual one); with --synth the built-in
    synth, alone or beside the port --port names."""
    from melody_lc.midi.ports import open_output

    if not args.synth:
        return open_output(args.port, virtual_name=args.port_name)
    from melody_lc.audio.port import SynthPort, Tee

    synth = SynthPort(args.soundfont, args.program, args.audio_driver)
    if not args.port:
        return synth
    try:
        return Tee(open_output(args.port), synth)
    except BaseException:
        synth.close()
        raise


class StatusFile:
    """--status: a JSON line per phrase played (tokens, source, how far ahead it was ready) and per
    log message, appended as they happen."""

    def __init__(self, path: str, engine, say) -> None:
        self.engine, self.written = engine, 0
        self.f = open(path, "a", buffering=1)  # noqa: SIM115 - closed by close()

        def log(message: str) -> None:
            say(message)
            self.f.write(json.dumps({"log": message}) + "\n")

        engine.log = log

    def update(self) -> None:
        for rec in self.engine.played[self.written :]:
            self.f.write(
                json.dumps(
                    {
                        "phrase": rec.index,
                        "source": rec.info.get("source"),
                        "tokens": [int(t) for t in rec.tokens],
                        "margin_s": rec.margin,
                        "satisfied": rec.info.get("satisfied"),
                        **{k: rec.info[k] for k in ("section", "t", "source_met", "target_met") if k in rec.info},
                        "interventions": rec.info.get("interventions"),
                    }
                )
                + "\n"
            )
        self.written = len(self.engine.played)

    def close(self) -> None:
        late = self.engine.step_lateness
        self.f.write(
            json.dumps(
                {
                    "steps": len(late),
                    "max_send_error_s": max(late, default=0.0),
                    "late_phrases": self.engine.transport.late_phrases,
                }
            )
            + "\n"
        )
        self.f.close()


def cmd_live(args) -> int:
    from melody_lc.cli import CLIError
    from melody_lc.cli.constrain import _parse_values, fit_config, fit_data
    from melody_lc.cli.model import _load
    from melody_lc.constrain import FIT_TEMPERATURE, cached_fit, fit_rounds, fit_rules, shipped_fits_dir
    from melody_lc.midi.ports import choose_api
    from melody_lc.paths import cache_dir
    from melody_lc.rules.plan import load_plan
    from melody_lc.tui.session import value_text

    chains = None
    if args.chain:
        from melody_lc.chain.checks import check_files
        from melody_lc.chain.syntax import load_chains

        chains = load_chains(args.chain)  # every name and parameter checked before anything opens
        check_files(chains)
        lead = next((c for c in chains.chains if c.source.name == "generator"), None)
        if lead is not None:
            v = lead.source.values
            if not args.rules and not args.set and lead.source.open_values:  # tonic=G and the like
                args.set = [
                    f"{k}={value_text(load_plan(v['rules']), k, x)}" for k, x in lead.source.open_values.items()
                ]
            args.rules = args.rules or v["rules"]
            args.channel, args.velocity, args.temperature, args.variation, args.seed = (
                v["channel"],
                v["velocity"],
                v["temperature"],
                v["variation"],
                v["seed"],
            )
    if args.bpm is None:
        args.bpm = chains.bpm if chains is not None and chains.bpm else 120.0
    _check(args)
    if not args.rules:
        raise CLIError("give --rules, or --chain with a chain whose source is generator(rules=...)")
    values = _parse_values(load_plan(args.rules), args.set)  # a broken file: one line, exit code 2, first
    if not sys.stdout.isatty():
        raise CLIError("melody-lc live needs a terminal (use `melody-lc stream` in scripts)")
    choose_api()
    from melody_lc.tui.app import LiveApp
    from melody_lc.tui.session import LiveSession, LiveSettings

    model, _ = _load(args)
    config = fit_config(args)
    store = cache_dir() / "fits"

    def find_fit(r):
        return cached_fit(r, model, [store], config, FIT_TEMPERATURE, search=(shipped_fits_dir(),))

    def fit(r, progress):
        return fit_rules(
            r, model, fit_data(args, model), config, cache_dir=store, progress=progress, search=(shipped_fits_dir(),)
        )

    settings = LiveSettings(
        bpm=args.bpm,
        channel=args.channel - 1,
        velocity=args.velocity,
        clock=args.clock,
        temperature=args.temperature,
        variation=args.variation,
        output=args.port,
        port_name=args.port_name,
        input=args.input,
        clock_input=args.clock_input,
        capture_last=args.capture_last,
        seed=args.seed,
        enforce=args.enforce,
        synth=args.synth,
        soundfont=args.soundfont,
        program=args.program,
        audio_driver=args.audio_driver,
    )
    from melody_lc.cli.chain import make_prepare

    session = LiveSession(
        model, args.rules, settings, values, find_fit, args.captures, chains=chains, prepare=make_prepare(args, model)
    )
    app = LiveApp(session, fit, autoplay=not args.paused, fit_rounds=lambda rules: fit_rounds(rules, config))
    try:
        app.run()
    finally:
        app.shutdown()  # panic and close the ports whatever ended the app
    return app.return_code or 0  # 130 after SIGTERM
