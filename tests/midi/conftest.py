"""Real MIDI ports for the live tests: a JACK server (CI starts one; otherwise the tests start their
own when `jackd` is installed, and skip, saying so, only when neither is possible)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _server_up() -> bool:
    return (
        subprocess.run(["jack_lsp"], capture_output=True, timeout=10).returncode == 0
        if shutil.which("jack_lsp")
        else False
    )


@pytest.fixture(scope="session")
def jack():
    """A running JACK server, and MELODY_LC_MIDI_API=jack for this process and its children."""
    started = None
    if not _server_up():
        if not shutil.which("jackd"):
            pytest.skip("no JACK server runs and jackd is not installed (apt-get install jackd2)")
        started = subprocess.Popen(
            ["jackd", "-S", "-R", "-P", "70", "-d", "dummy", "-r", "48000", "-p", "256"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(100):
            if _server_up():
                break
            if started.poll() is not None:  # no real-time privilege: run without
                started = subprocess.Popen(
                    ["jackd", "-S", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            time.sleep(0.1)
        else:
            started.kill()
            pytest.skip("jackd was started but never answered")
    old = os.environ.get("MELODY_LC_MIDI_API")
    os.environ["MELODY_LC_MIDI_API"] = "jack"
    yield
    if old is None:
        os.environ.pop("MELODY_LC_MIDI_API", None)
    else:
        os.environ["MELODY_LC_MIDI_API"] = old
    if started is not None:
        started.send_signal(signal.SIGTERM)
        started.wait(10)


class Receiver:
    """A separate process listening on a virtual port ``name``; ``messages()`` reads what arrived."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.midi.receiver", name, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def messages(self):
        import mido

        out = []
        for line in self.path.read_text().splitlines():
            d = json.loads(line)
            out.append((d["t"], mido.Message.from_bytes(d["msg"])))
        return out

    def stop(self, settle: float = 0.5, limit: float = 10.0):
        """What arrived, once nothing new has come for ``settle`` seconds (what is still in flight
        through the MIDI system is waited for, up to ``limit``)."""
        count, quiet_since, t0 = -1, time.monotonic(), time.monotonic()
        while self.proc.poll() is None and time.monotonic() - t0 < limit:
            n = len(self.path.read_text().splitlines()) if self.path.exists() else 0
            if n != count:
                count, quiet_since = n, time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                break
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        return self.messages()


@pytest.fixture
def receiver(jack, tmp_path):
    made = []

    def make(name: str) -> Receiver:
        r = Receiver(name, tmp_path / f"{name}.jsonl")
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()
