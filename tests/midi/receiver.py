"""A MIDI receiver in its own process, on a real port: records every message with its arrival time.

    python -m tests.midi.receiver PORT_NAME OUT.jsonl

Opens a virtual input called PORT_NAME (client and port both), prints "ready" once it exists, and
writes one JSON line per message, {"t": monotonic seconds, "msg": [bytes]}, flushed at once, until
SIGTERM. CLOCK_MONOTONIC is shared by all processes of a machine, so times compare across them.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time


def main() -> None:
    from melody_lc.midi.ports import open_input

    name, out_path = sys.argv[1], sys.argv[2]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    with open(out_path, "w", buffering=1) as out:
        lock = threading.Lock()

        def on_message(msg):
            t = time.monotonic()
            with lock:
                out.write(json.dumps({"t": t, "msg": msg.bytes()}) + "\n")

        port = open_input(None, virtual_name=name, callback=on_message)
        print("ready", flush=True)
        done.wait()
        port.close()


if __name__ == "__main__":
    main()
