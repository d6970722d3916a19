"""``melody-lc render`` and ``melody-lc play``: hear melodies without a DAW (the built-in synth,
melody_lc/audio), and the ``--audio`` / ``--play`` options of the commands that write melodies."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from melody_lc.choices import AUDIO_FORMATS
from melody_lc.cli import checks


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "render",
        help="render .mid files to audio (WAV, or FLAC) with the built-in General MIDI synth",
        description="Each IN.mid becomes DIR/IN.wav: its tempo, programs and velocities as written, "
        "played by FluidSynth with a General MIDI sound font (default: the small TimGM6mb that comes "
        "with melody-lc).",
    )
    r.add_argument("inputs", nargs="+", metavar="IN.mid")
    r.add_argument(
        "--out", metavar="DIR", type=checks.out_folder, help="where the audio goes (default: beside each .mid)"
    )
    r.add_argument("--format", choices=AUDIO_FORMATS, default=AUDIO_FORMATS[0])
    soundfont_option(r)
    r.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "play",
        help="play .mid files through the machine's audio output with the built-in synth",
        description="Plays each file in turn, in tempo: through JACK when a JACK server runs, "
        "otherwise the platform's default audio output. Ctrl-C stops, with no note left hanging.",
    )
    p.add_argument("inputs", nargs="+", metavar="IN.mid")
    soundfont_option(p)
    driver_option(p)
    p.set_defaults(func=cmd_play)


def soundfont_option(p: argparse.ArgumentParser) -> None:
    from melody_lc.audio.soundfonts import SOUNDFONT_DIRS

    p.add_argument(
        "--soundfont",
        metavar="SF2",
        help="a General MIDI sound font, by path or by name in "
        + ", ".join(SOUNDFONT_DIRS)
        + " (e.g. FluidR3_GM from Debian's fluid-soundfont-gm); default: TimGM6mb, shipped with pretty_midi",
    )


def driver_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--audio-driver",
        metavar="NAME",
        help="FluidSynth's audio driver (jack, pulseaudio, alsa, coreaudio, wasapi, ...); "
        "default: JACK when a server runs, else the platform's default",
    )


def output_options(p: argparse.ArgumentParser) -> None:
    """--audio and --play for the commands that write melodies (generate, sample)."""
    p.add_argument(
        "--audio",
        nargs="?",
        const=AUDIO_FORMATS[0],
        choices=AUDIO_FORMATS,
        help="also render each melody to audio beside its .mid (WAV, or --audio flac)",
    )
    p.add_argument("--play", action="store_true", help="play the melodies through the built-in synth when written")
    soundfont_option(p)


def after_writing(paths: list[Path], args) -> None:
    """What --audio and --play ask for, once the .mid files are written."""
    if getattr(args, "audio", None):
        render_files(paths, None, args.audio, args.soundfont, need_notes=False)
    if getattr(args, "play", False):
        play_files(paths, args.soundfont, None, need_notes=False)


def render_files(inputs, out_dir, fmt: str, soundfont, need_notes: bool = True) -> list[Path]:
    from melody_lc.audio.files import write_audio
    from melody_lc.audio.soundfonts import find_soundfont
    from melody_lc.audio.synth import Synth, read_midi_file

    find_soundfont(soundfont)  # a bad sound font is the first thing said
    # and then a bad file (or one without notes, given by the user), before anything is written
    midis = [(Path(p), read_midi_file(p, need_notes)) for p in inputs]
    written = []
    for path, midi in midis:
        synth = Synth(soundfont)
        try:
            audio = synth.render_midi(midi)
        finally:
            synth.close()
        target = (Path(out_dir) if out_dir else path.parent) / f"{path.stem}.{fmt}"
        peak = float(abs(audio).max()) if len(audio) else 0.0
        if peak > 1.0:  # a dense file: scaled down rather than clipped
            audio = audio / peak
        write_audio(target, audio, synth.sample_rate)
        written.append(target)
        level = f"peak {20 * math.log10(peak):.1f} dBFS" if peak > 0 else "silent"
        print(f"wrote {target} ({len(audio) / synth.sample_rate:.1f} s, {level})")
    return written


def play_files(inputs, soundfont, driver, need_notes: bool = True) -> None:
    """Each file in turn, in real time, on the built-in synth; Ctrl-C ends every note first."""
    import time

    from melody_lc.audio.synth import TAIL_S, Synth, read_midi_file
    from melody_lc.midi.schedule import Clock

    midis = [(Path(p), read_midi_file(p, need_notes)) for p in inputs]
    synth = Synth(soundfont)
    try:
        name = synth.start(driver)
        clock = Clock()
        for path, midi in midis:
            print(f"playing {path} ({midi.length:.1f} s) through {name}; Ctrl-C stops", file=sys.stderr)
            t0, t = clock.now() + 0.05, 0.0
            for msg in midi:
                t += msg.time
                if not msg.is_meta:
                    clock.sleep_until(t0 + t)
                    synth.send(msg)
            synth.all_off()
            time.sleep(TAIL_S / 2)  # the last notes' release
    finally:
        synth.all_off()
        time.sleep(0.05)
        synth.close()


def cmd_render(args) -> int:
    render_files(args.inputs, args.out, args.format, args.soundfont)
    return 0


def cmd_play(args) -> int:
    play_files(args.inputs, args.soundfont, args.audio_driver)
    return 0
