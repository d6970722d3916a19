"""Does every MIDI message sent through a JACK port arrive, once? Asynchronous vs synchronous server.

    python benchmarks/jack_delivery.py [--messages 3000] [--gap-ms 2] [--runs 4] [--load 3]

For each mode it starts its own JACK server (the dummy driver, 48 kHz, 256 frames, real-time when
allowed, under a private server name, so a running server is left alone), then per run: a receiver
in another process on a virtual input, a sender here that sends numbered note-ons ``--gap-ms``
apart while it lists the ports every 0.1 s (as the live engine's port watch does) and ``--load``
busy processes compete for the CPU (the test suite trains and fits models while it listens).
Prints, per mode and run, the messages lost and the messages that arrived twice.

jackd2's default, the asynchronous mode, lets a client read its input a cycle late: on a loaded
virtual machine the dummy driver overruns its period and messages are dropped or repeated. With
``-S`` the server waits for every client in each cycle. This is why ``.ci/run`` and the tests start
``jackd -S``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = "melody-lc-bench"
RECEIVER = """
import json, signal, sys, threading, time, rtmidi
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
out = open(sys.argv[1], "w", buffering=1)
port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bench-rx")
port.set_callback(lambda event, data: out.write(json.dumps(event[0]) + "\\n"))
port.open_virtual_port("in")
print("ready", flush=True)
done.wait()
"""
BUSY = "import time\nend = time.time() + float(__import__('sys').argv[1])\nwhile time.time() < end: pass\n"


def start_server(sync: bool) -> subprocess.Popen:
    flags = ["-S"] if sync else []
    for rt in (["-R", "-P", "70"], ["--no-realtime"]):
        proc = subprocess.Popen(
            ["jackd", "-n", SERVER, *flags, *rt, "-d", "dummy", "-r", "48000", "-p", "256"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50):
            if proc.poll() is not None:
                break
            if subprocess.run(["jack_lsp"], capture_output=True, env=os.environ).returncode == 0:
                return proc
            time.sleep(0.1)
        proc.kill()
        proc.wait()
    sys.exit("jackd did not start")


def one_run(n: int, gap: float, load: int, path: Path) -> tuple[int, int]:
    import rtmidi

    rx = subprocess.Popen([sys.executable, "-c", RECEIVER, str(path)], stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    busy = [subprocess.Popen([sys.executable, "-c", BUSY, str(n * gap + 2)]) for _ in range(load)]
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-tx")
    out.open_port(next(i for i, name in enumerate(out.get_ports()) if "bench-rx" in name))
    probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-probe")
    time.sleep(0.5)
    t0 = last_list = time.monotonic()
    for i in range(n):
        while time.monotonic() < t0 + i * gap:
            time.sleep(0.0005)
        out.send_message([0x90, i % 128, i // 128 % 127 + 1])  # the number i, while i < 16,256
        if time.monotonic() - last_list > 0.1:
            probe.get_ports()
            last_list = time.monotonic()
    time.sleep(1.0)
    rx.terminate()
    rx.wait()
    for p in busy:
        p.wait()
    out.delete()
    probe.delete()
    got = collections.Counter(m[1] + 128 * (m[2] - 1) for m in map(json.loads, path.read_text().splitlines()))
    return sum(1 for i in range(n) if i not in got), sum(1 for c in got.values() if c > 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--gap-ms", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--load", type=int, default=3, help="busy processes beside sender and receiver")
    args = ap.parse_args()
    if not shutil.which("jackd"):
        sys.exit("jackd is not installed (apt-get install jackd2)")
    os.environ["JACK_DEFAULT_SERVER"] = SERVER
    print(
        f"{args.messages} note-ons {args.gap_ms} ms apart per run, {args.load} busy processes, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for sync in (False, True):
            server = start_server(sync)
            try:
                results = [
                    one_run(args.messages, args.gap_ms / 1000, args.load, Path(tmp) / "rx.jsonl")
                    for _ in range(args.runs)
                ]
            finally:
                server.terminate()
                server.wait()
            lost, dup = sum(r[0] for r in results), sum(r[1] for r in results)
            mode = "synchronous (-S)" if sync else "asynchronous (default)"
            runs = ", ".join(f"{a} lost/{b} twice" for a, b in results)
            print(f"{mode:24s} lost {lost} and twice {dup} of {args.messages * args.runs}   runs: {runs}")


if __name__ == "__main__":
    main()
