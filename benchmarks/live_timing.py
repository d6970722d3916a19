"""Timing of the live engine through a real MIDI port (JACK), heard by a receiver in another process.

    jackd -S --no-realtime -d dummy -r 48000 -p 64 &     # or any running JACK server
    python benchmarks/live_timing.py [--rules rules/c_major_busy.rules] [--bpm 240] [--phrases 3]

Prints, for note-ons:
  - send error: when the engine sent each step's messages minus its deadline on the absolute clock
    (what melody-lc controls);
  - arrival error: arrival time at the receiver minus grid time, after removing the constant
    latency (the median) of the port; this includes the JACK period (1.3 ms at -p 64, 48 kHz);
  - time from start (the model and fit loaded) to the first note heard;
  - how far ahead of its deadline each phrase was ready, and how many were late.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", default=str(REPO / "rules" / "c_major_busy.rules"))
    ap.add_argument("--bpm", type=float, default=240.0)
    ap.add_argument("--phrases", type=int, default=3)
    ap.add_argument("--model")
    args = ap.parse_args()
    os.environ.setdefault("MELODY_LC_MIDI_API", "jack")
    sys.path.insert(0, str(REPO))

    import torch

    from melody_lc.cli.constrain import _prepare
    from melody_lc.midi.live import LiveConfig, LiveEngine
    from melody_lc.midi.maker import PhraseMaker
    from melody_lc.midi.ports import open_output

    out_file = Path("/tmp") / f"melody-lc-live-timing-{os.getpid()}.jsonl"
    recv = subprocess.Popen(
        [sys.executable, "-m", "tests.midi.receiver", "lc-bench", str(out_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout.readline().strip() == "ready"
    ns = argparse.Namespace(rules=args.rules, model=args.model, data=None, quiet=True, rounds=None, quick=False)
    rules, model, fitted = _prepare(ns)
    out = open_output("lc-bench")
    maker = PhraseMaker(model, rules, fitted)
    engine = LiveEngine(maker, out, LiveConfig(bpm=args.bpm, phrases=args.phrases))
    time.sleep(0.5)
    t_start = time.monotonic()
    engine.start()
    engine.done.wait()
    engine.stop()
    time.sleep(0.3)
    recv.send_signal(signal.SIGTERM)
    recv.wait(10)
    out.close()
    import mido

    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    out_file.unlink()
    arrivals = [(r["t"], mido.Message.from_bytes(r["msg"])) for r in rows]
    ons_heard = [t for t, m in arrivals if m.type == "note_on"]
    ons_sent = [(p, m) for p, m in engine.transport.sent if m.type == "note_on"]
    assert len(ons_heard) == len(ons_sent), (len(ons_heard), len(ons_sent))
    grid = np.array([engine.tempo.time_of(p) for p, _ in ons_sent])
    arrival = np.array(ons_heard) - grid
    arrival -= np.median(arrival)
    send = np.array(engine.step_lateness)
    margins = [r.margin for r in engine.played]

    def ms(x):
        return (
            f"median {np.median(x) * 1e3:.3f} ms, p99 {np.percentile(x, 99) * 1e3:.3f} ms, max {np.max(x) * 1e3:.3f} ms"
        )

    print(
        f"{args.phrases} phrases at {args.bpm:g} bpm, {len(ons_sent)} note-ons, torch threads {torch.get_num_threads()}"
    )
    print(f"send error (sent - deadline), {len(send)} steps: {ms(send)}")
    print(f"arrival error |heard - grid - latency|: {ms(np.abs(arrival))}")
    print(f"port latency (median heard - grid): {np.median(np.array(ons_heard) - grid) * 1e3:.2f} ms")
    print(
        f"start to first note heard: {(ons_heard[0] - t_start) * 1e3:.0f} ms "
        f"(first phrase made in {engine.first_phrase_s * 1e3:.0f} ms, lead {engine.config.lead * 1e3:.0f} ms)"
    )
    print(
        f"phrase ready ahead of its deadline: min {min(margins):.2f} s, median {np.median(margins):.2f} s; "
        f"late phrases: {engine.transport.late_phrases}"
    )


if __name__ == "__main__":
    main()
