"""A piano-roll sheet of a batch of melodies as a PNG (one tile per melody, bar lines marked)."""

from __future__ import annotations

import os

import numpy as np

from melody_lc.fileio import atomic_path
from melody_lc.melody import metrics
from melody_lc.melody.encoding import BAR_STEPS, NUM_PITCHES, STEPS


def pianoroll_sheet(
    tokens: np.ndarray,
    path: str | os.PathLike,
    columns: int = 4,
    step_px: int = 2,
    pitch_px: int = 3,
    marks: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write ``tokens`` (N, 256) as a grid of piano rolls; pitch range shared by all tiles.

    ``marks`` = (notes (N, 256) bool, melodies (N,) bool), as from ``RuleSet.violations``: the
    notes that break a rule are drawn in red (as the paper's Fig. 3 marks notes out of key), and a
    melody that breaks any rule gets a red frame."""
    from PIL import Image

    t = np.atleast_2d(tokens)
    sounding = metrics.sounding_pitch(t)  # (N, 256), -1 silent
    onsets = t < NUM_PITCHES
    used = sounding[sounding >= 0]
    lo, hi = (int(used.min()), int(used.max())) if used.size else (60, 72)
    lo, hi = lo - 2, hi + 2
    rows_px = (hi - lo + 1) * pitch_px
    tile_w, tile_h = STEPS * step_px + 8, rows_px + 8
    n = len(t)
    cols = min(columns, n)
    grid_rows = -(-n // cols)
    img = np.full((grid_rows * tile_h, cols * tile_w, 3), 255, dtype=np.uint8)
    bad_note = np.zeros(t.shape, bool)
    if marks is not None:  # each step takes the mark of the note sounding there
        last_onset = np.maximum.accumulate(np.where(onsets, np.arange(STEPS), 0), axis=1)
        bad_note = np.take_along_axis(np.asarray(marks[0], bool), last_onset, axis=1) & (sounding >= 0)
    for k in range(n):
        y0, x0 = (k // cols) * tile_h + 4, (k % cols) * tile_w + 4
        if marks is not None and marks[1][k]:
            img[y0 - 3 : y0 + rows_px + 3, x0 - 3 : x0 + STEPS * step_px + 3] = (220, 30, 30)
        tile = img[y0 : y0 + rows_px, x0 : x0 + STEPS * step_px]
        tile[:] = 245
        for bar in range(0, STEPS, BAR_STEPS):
            tile[:, bar * step_px] = 200
        for s in range(STEPS):
            p = sounding[k, s]
            if p < 0:
                continue
            y = (hi - p) * pitch_px
            if bad_note[k, s]:
                color, edge = ((200, 20, 20) if onsets[k, s] else (240, 90, 90)), (120, 0, 0)
            else:
                color, edge = ((30, 60, 160) if onsets[k, s] else (90, 130, 220)), (10, 20, 80)
            tile[y : y + pitch_px, s * step_px : (s + 1) * step_px] = color
            if onsets[k, s]:
                tile[y : y + pitch_px, s * step_px] = edge
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
