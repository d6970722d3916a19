"""Make docs/live.png, the README's picture of `melody-lc live`: the app run headless on a real
MIDI port (a JACK server must run), a few keys pressed, Textual's SVG screenshot turned into a PNG
with rsvg-convert (Debian: librsvg2-bin).

    python docs/make_screenshot.py [--out docs/live.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "live.png"))
    ap.add_argument("--size", default="140x44")
    args = ap.parse_args()
    os.environ.setdefault("MELODY_LC_MIDI_API", "jack")

    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.melody.train import load_model
    from melody_lc.tui.app import LiveApp
    from melody_lc.tui.session import LiveSession, LiveSettings

    model, _ = load_model(REPO / "models" / "melody-16bar-folk")
    tmp = Path(tempfile.mkdtemp())
    shutil.copy(REPO / "rules" / "any_key_major.rules", tmp / "any_key_major.rules")
    session = LiveSession(model, tmp / "any_key_major.rules", LiveSettings(bpm=240),
                          find_fit=lambda r: cached_fit(r, model, [], search=(shipped_fits_dir(),)),
                          captures=tmp / "captures")
    app = LiveApp(session)
    width, height = (int(x) for x in args.size.split("x"))

    async def run() -> Path:
        async with app.run_test(size=(width, height)) as pilot:
            await pilot.pause(1.0)
            await pilot.press("k", "k", "k", "k", "k", "k", "k")  # G major from the next phrase
            while session.current() is None or session.current().index < 1 or session.engine.step() < 100:
                await pilot.pause(0.1)
            await pilot.press("s")
            await pilot.pause(0.3)
            svg = Path(app.save_screenshot(path=str(tmp), filename="live.svg"))
            await pilot.press("q")
        return svg

    svg = asyncio.run(run())
    subprocess.run(["rsvg-convert", "-w", str(width * 10), str(svg), "-o", args.out], check=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
