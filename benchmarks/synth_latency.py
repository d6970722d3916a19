"""From note to sound: the built-in synth's latency on JACK, beside a MIDI port's note-to-arrival.

    python benchmarks/synth_latency.py [--notes 200] [--periods 64 256]

For each period it starts its own JACK server (the dummy driver, 48 kHz, synchronous, real-time
when allowed, under a private name, so a running server is left alone). One capture client here
has two audio inputs, connected to the built-in synth (``SynthPort``, FluidSynth on JACK), and a
MIDI input, connected to a MIDI output port opened as melody-lc opens its own (python-rtmidi).
Each note-on is sent at once to both, ``--gap-ms`` apart (staccato, GM program 12, marimba); for
each, the JACK frame clock at the send is read (``jack_frame_time``). What arrives is timed in the
same clock: the MIDI event by its frame in its cycle, the sound by its energy onset
(``audio.synth.energy_onsets``, 1 ms hops). Prints the CPU, per period the latency from the send to
the MIDI event and to the sound (median, 90th percentile, max), and notes heard.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

SERVER = "melody-lc-synth-bench"


def start_server(period: int) -> subprocess.Popen:
    for rt in (["-R", "-P", "70"], ["--no-realtime"]):
        proc = subprocess.Popen(
            ["jackd", "-n", SERVER, "-S", *rt, "-d", "dummy", "-r", "48000", "-p", str(period)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50):
            if proc.poll() is not None:
                break
            if subprocess.run(["jack_lsp"], capture_output=True).returncode == 0:
                return proc
            time.sleep(0.1)
        proc.kill()
        proc.wait()
    sys.exit("jackd did not start")


def measure(notes: int, gap: float) -> dict:
    import jack
    import mido
    import rtmidi

    from melody_lc.audio.port import SynthPort
    from melody_lc.audio.synth import energy_onsets

    synth = SynthPort(program=12, name="bench-synth")
    client = jack.Client("bench-capture", no_start_server=True)
    ins = [client.inports.register(f"in_{c}") for c in "lr"]
    midi_in = client.midi_inports.register("midi_in")
    blocks, events, lock = [], [], threading.Lock()

    @client.set_process_callback
    def process(frames):
        at = client.last_frame_time
        block = np.stack([p.get_array().copy() for p in ins], 1)
        got = [at + offset for offset, _ in midi_in.incoming_midi_events()]
        with lock:
            blocks.append((at, block))
            events.extend(got)

    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-midi")
    gc.disable()  # a collection would hold the GIL, and the capture callback with it
    client.activate()
    client.connect("bench-synth:left", "bench-capture:in_l")
    client.connect("bench-synth:right", "bench-capture:in_r")
    out.open_port(next(i for i, n in enumerate(out.get_ports()) if "bench-capture" in n))
    time.sleep(0.5)
    sent = []
    t0 = time.monotonic()
    for k in range(notes):
        while time.monotonic() < t0 + k * gap:
            time.sleep(0.0005)
        note = 60 + (k * 5) % 24
        f = client.frame_time
        out.send_message([0x90, note, 100])
        synth.send(mido.Message("note_on", note=note, velocity=100))
        sent.append(f)
        time.sleep(gap / 3)
        synth.send(mido.Message("note_off", note=note))
        out.send_message([0x80, note, 0])
    time.sleep(0.5)
    client.deactivate()
    gc.enable()
    sr = client.samplerate
    client.close()
    out.delete()
    synth.close()
    first = blocks[0][0]
    audio = np.zeros((blocks[-1][0] + len(blocks[-1][1]) - first, 2), np.float32)
    for at, block in blocks:
        audio[at - first : at - first + len(block)] = block
    onsets = first + np.round(energy_onsets(audio, sr) * sr).astype(np.int64)
    midi_on = np.asarray(events[0::2], np.int64)  # each note's on, then its off
    sound, midi = [], []
    for f in sent:
        a = onsets[(onsets >= f) & (onsets < f + int(gap * sr * 0.6))]
        m = midi_on[(midi_on >= f - sr // 1000) & (midi_on < f + int(gap * sr * 0.6))]
        if len(a):
            sound.append((a.min() - f) / sr * 1000)
        if len(m):
            midi.append((m.min() - f) / sr * 1000)

    def stats(x):
        x = np.asarray(x)
        return {
            "median_ms": round(float(np.median(x)), 2),
            "p90_ms": round(float(np.percentile(x, 90)), 2),
            "max_ms": round(float(x.max()), 2),
            "n": len(x),
        }

    return {"sound": stats(sound), "midi": stats(midi), "sent": len(sent)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notes", type=int, default=200)
    ap.add_argument("--gap-ms", type=float, default=150.0)
    ap.add_argument("--periods", type=int, nargs="+", default=[64, 256])
    args = ap.parse_args()
    from melody_lc.melody.hardware import describe_hardware

    print(describe_hardware())
    print(
        f"{args.notes} notes {args.gap_ms:g} ms apart; JACK dummy driver, 48 kHz, synchronous; the synth: "
        "FluidSynth on JACK, TimGM6mb, GM program 12"
    )
    print("| period | one period | MIDI port: median | p90 | max | synth sound: median | p90 | max | notes heard |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    os.environ["JACK_DEFAULT_SERVER"] = SERVER
    os.environ["MELODY_LC_AUDIO_DRIVER"] = "jack"
    for period in args.periods:
        server = start_server(period)
        try:
            r = measure(args.notes, args.gap_ms / 1000)
        finally:
            server.terminate()
            server.wait(10)
        m, s = r["midi"], r["sound"]
        print(
            f"| {period} | {period / 48:.2f} ms | {m['median_ms']} ms | {m['p90_ms']} ms | {m['max_ms']} ms "
            f"| {s['median_ms']} ms | {s['p90_ms']} ms | {s['max_ms']} ms | {s['n']} of {r['sent']} |"
        )
        print(json.dumps({"period": period, **r}), file=sys.stderr)


if __name__ == "__main__":
    main()
