"""The 130-class, 256-step melody encoding: the contract between data and model.

A melody is 16 bars x 16 sixteenth-note steps = 256 steps. Each step holds one of 130 classes:

* ``0..127``  note-on of that MIDI pitch (the previous note, if any, ends here);
* ``128`` (:data:`HOLD`)  nothing new happens: the previous note keeps sounding, or the silence goes on;
* ``129`` (:data:`REST`)  the sounding note ends here and silence begins.

This is the paper's (and MusicVAE's) melody encoding. Several token strings mean the same music
(``REST REST`` and ``REST HOLD``; a ``HOLD`` or ``REST`` at step 0). :func:`canonical` picks one
spelling: silence starts with one ``REST`` (also at step 0) and goes on with ``HOLD``. Every
:class:`~melody_lc.melody.Melody` is stored canonically, so equal music means equal tokens.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 130
NUM_PITCHES = 128  # tokens below this are note-ons (of that MIDI pitch)
HOLD = 128
REST = 129
BAR_STEPS = 16
NUM_BARS = 16
STEPS = BAR_STEPS * NUM_BARS  # 256
STEPS_PER_QUARTER = 4


def canonical(tokens: np.ndarray) -> np.ndarray:
    """Canonical spelling of token rows ``(..., T)``: one REST where silence starts, then HOLDs.

    Silence at step 0 is spelled REST. The input is not modified; the result is uint8.
    """
    t = np.array(tokens, dtype=np.int16)
    is_note = t < NUM_PITCHES
    event = t != HOLD
    # Was a note sounding just before each step? Find the last event before step i.
    idx = np.where(event, np.arange(t.shape[-1]), -1)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    prev_idx = np.concatenate([np.full(t.shape[:-1] + (1,), -1), idx[..., :-1]], axis=-1)
    prev_is_note = np.where(prev_idx >= 0, np.take_along_axis(is_note, np.maximum(prev_idx, 0), -1), False)
    # A REST while already silent is a HOLD.
    t = np.where((t == REST) & ~prev_is_note, HOLD, t)
    # Step 0: silence is spelled REST.
    t[..., 0] = np.where(t[..., 0] == HOLD, REST, t[..., 0])
    return t.astype(np.uint8)
