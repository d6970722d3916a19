"""Recording what arrives at JACK audio inputs, with JACK's frame clock: the tests and
benchmarks check what the built-in synth sounded, and when, against what was sent. Needs the
JACK-Client package (the test extra) and a running JACK server.

    with JackCapture(["melody-lc-synth:left", "melody-lc-synth:right"]) as cap:
        sent = cap.now()                 # the server's frame clock, for a message sent now
        ...
    audio = cap.audio()                  # (frames, 2) float32 from cap.first_frame on
"""

from __future__ import annotations

import gc
import threading

import numpy as np


class JackCapture:
    def __init__(self, sources: list[str], name: str = "melody-lc-capture") -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.inputs = [self.client.inports.register(f"in_{i + 1}") for i in range(len(sources))]
        self.sources = sources
        self.sample_rate: int = self.client.samplerate
        self.blocks: list[tuple[int, np.ndarray]] = []  # (the frame it began at, its samples)
        self.first_frame: int | None = None
        self._lock = threading.Lock()
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        block = np.stack([p.get_array().copy() for p in self.inputs], 1)
        at = self.client.last_frame_time
        with self._lock:
            if self.first_frame is None:
                self.first_frame = at
            self.blocks.append((at, block))

    def now(self) -> int:
        """JACK's estimate of the current frame (the clock the captured audio is counted in)."""
        return self.client.frame_time

    def __enter__(self) -> JackCapture:
        # A full collection in a process holding a model takes the GIL for ~80 ms; the callback would
        # wait, and on a synchronous server (jackd -S) hold back every client's cycle with it.
        self._gc = gc.isenabled()
        gc.disable()
        self.client.activate()
        for src, dst in zip(self.sources, self.inputs):
            self.client.connect(src, dst)
        return self

    def __exit__(self, *exc) -> None:
        self.client.deactivate()
        self.client.close()
        if self._gc:
            gc.enable()

    def audio(self) -> np.ndarray:
        """Everything captured, each block at its own frame: a cycle this client missed (the server
        ran on without it) is silence in its place, so times stay true."""
        with self._lock:
            blocks = list(self.blocks)
        if not blocks:
            return np.zeros((0, len(self.inputs)), np.float32)
        end = blocks[-1][0] + len(blocks[-1][1]) - self.first_frame
        out = np.zeros((end, len(self.inputs)), np.float32)
        for at, block in blocks:
            out[at - self.first_frame : at - self.first_frame + len(block)] = block
        return out

    def missed_frames(self) -> int:
        """Frames of the captured span that no block covered."""
        with self._lock:
            blocks = list(self.blocks)
        if not blocks:
            return 0
        return blocks[-1][0] + len(blocks[-1][1]) - self.first_frame - sum(len(b) for _, b in blocks)
