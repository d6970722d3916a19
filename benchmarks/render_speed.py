"""Rendering melodies to audio with the built-in synth: how fast, and do its onsets fall where the
notes start?

    python benchmarks/render_speed.py [-n 32]

Decodes ``n`` melodies from the shipped model's prior (temperature 0.5, seeded), writes each as a
.mid at 120 bpm, and renders it (FluidSynth, TimGM6mb, 44.1 kHz stereo) as `melody-lc render`
does, for two General MIDI programs: 0 (piano) and 12 (marimba). Prints the CPU, the float32 matmul
reference, seconds of audio rendered per second of wall time, and how the energy onsets
(``audio.synth.energy_onsets``) match the notes' starts: the share of notes with an onset from 2 ms
before to 12 ms after their start, the share of onsets that are such a note's, and the median
distance from a note to its nearest onset.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=32)
    args = ap.parse_args()
    import pretty_midi

    from melody_lc.audio.synth import Synth, energy_onsets, read_midi_file
    from melody_lc.melody import Melody
    from melody_lc.melody.hardware import describe_hardware, matmul_gflops
    from melody_lc.melody.train import load_model

    print(f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s")
    model, _ = load_model(REPO / "models" / "melody-16bar-folk")
    z = torch.randn(args.n, model.config.z_size, generator=torch.Generator().manual_seed(0))
    tokens = model.decode(z, 0.5, torch.Generator().manual_seed(1)).numpy()
    print(f"{args.n} melodies of 16 bars from the prior at temperature 0.5, 120 bpm; FluidSynth, TimGM6mb, 44.1 kHz")
    print("| program | audio s per wall s | notes with an onset (-2..+12 ms) | onsets at a note | median error |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for program, name in ((0, "0 piano"), (12, "12 marimba")):
            audio_s = wall = 0.0
            recall, precision, err = [], [], []
            for k, t in enumerate(tokens):
                path = Path(tmp) / f"m{k}.mid"
                Melody(t).to_midi_file(path, qpm=120, program=program)
                t0 = time.perf_counter()
                synth = Synth()
                audio = synth.render_midi(read_midi_file(path))
                synth.close()
                wall += time.perf_counter() - t0
                audio_s += len(audio) / synth.sample_rate
                pm = pretty_midi.PrettyMIDI(str(path))
                starts = np.array(sorted({n.start for i in pm.instruments for n in i.notes}))
                onsets = energy_onsets(audio, synth.sample_rate)
                if not len(starts) or not len(onsets):
                    continue
                d = onsets[None, :] - starts[:, None]
                near = (d >= -0.002) & (d <= 0.012)
                recall.append(near.any(1).mean())
                precision.append(near.any(0).mean())
                err.append(np.median(np.abs(d).min(1)))
            print(
                f"| {name} | {audio_s / wall:.0f} | {np.mean(recall):.1%} | {np.mean(precision):.1%} "
                f"| {np.median(err) * 1000:.1f} ms |"
            )


if __name__ == "__main__":
    main()
