"""Helpers for the audio tests: real melodies from the shipped model, written as .mid files, and
the comparison of heard onsets with the notes' start times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.midi.conftest import jack  # noqa: F401 - the JACK server, for the synth on real audio ports
from tests.tui.conftest import make_session, shipped_model  # noqa: F401 - a live session, for the synth key

REPO = Path(__file__).resolve().parents[2]
MARIMBA = 12  # a percussive GM program: every attack shows in the energy (a piano's legato ones hide)


@pytest.fixture(scope="session")
def melody_files(tmp_path_factory, shipped_model):  # noqa: F811 - the fixture imported above
    """Three 16-bar melodies sampled from the shipped model (seeded), as .mid files at 120 bpm."""
    import torch

    from melody_lc.melody import Melody

    model = shipped_model
    z = torch.randn(3, model.config.z_size, generator=torch.Generator().manual_seed(5))
    tokens = model.decode(z, 0.5, torch.Generator().manual_seed(6)).numpy()
    folder = tmp_path_factory.mktemp("melodies")
    paths = []
    for k, t in enumerate(tokens):
        path = folder / f"melody-{k}.mid"
        Melody(t).to_midi_file(path, qpm=120, program=MARIMBA)
        paths.append(path)
    return paths


def note_starts(path: Path) -> np.ndarray:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    return np.array(sorted({round(n.start, 6) for inst in pm.instruments for n in inst.notes}))


def matched(onsets: np.ndarray, starts: np.ndarray, before: float, after: float) -> tuple[float, float]:
    """(share of ``starts`` with an onset from ``before`` s before to ``after`` s after it, share of
    ``onsets`` that lie so near a start)."""
    if not len(onsets) or not len(starts):
        return 0.0, 0.0
    d = onsets[None, :] - starts[:, None]  # (starts, onsets)
    near = (d >= -before) & (d <= after)
    return float(near.any(1).mean()), float(near.any(0).mean())


def onset_error(onsets: np.ndarray, starts: np.ndarray) -> float:
    """The median, over the notes, of the distance to the nearest onset (seconds)."""
    return float(np.median(np.abs(onsets[None, :] - starts[:, None]).min(1))) if len(onsets) else np.inf
