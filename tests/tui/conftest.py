"""The terminal UI's tests: the shipped model and the fits shipped for the example rules, so the
app opens at once; real JACK ports from tests/midi/conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.midi.conftest import jack, receiver  # noqa: F401 - fixtures used here too

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shipped_model():
    from melody_lc.melody.train import load_model

    model, _ = load_model(REPO / "models" / "melody-16bar-folk")
    return model


@pytest.fixture
def make_session(shipped_model, tmp_path):
    """A LiveSession on a copy of an example rules file (found fits: the shipped ones)."""
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.tui.session import LiveSession, LiveSettings

    made = []

    def make(example: str = "any_key_major.rules", **settings):
        rules = tmp_path / example
        shutil.copy(REPO / "rules" / example, rules)

        def find_fit(r):
            return cached_fit(r, shipped_model, [], search=(shipped_fits_dir(),))

        s = LiveSession(
            shipped_model, rules, LiveSettings(**settings), find_fit=find_fit, captures=tmp_path / "captures"
        )
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
