"""Make docs/live.png, the README's picture of `melody-lc live`: the app run headless on a real
MIDI port (a JACK server must run), a few keys pressed, Textual's SVG screenshot turned into a PNG
with rsvg-convert (Debian: librsvg2-bin). With --chain, the picture of `live --chain` instead.

    python docs/make_screenshot.py [--out docs/live.png]
    python docs/make_screenshot.py --chain rules/lead_and_bass.chain --out docs/live-chain.png --size 140x52
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
    ap.add_argument("--chain", help="a chain file: the picture of `melody-lc live --chain`")
    args = ap.parse_args()
    os.environ.setdefault("MELODY_LC_MIDI_API", "jack")

    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.melody.train import load_model
    from melody_lc.tui.app import LiveApp
    from melody_lc.tui.session import LiveSession, LiveSettings

    model, _ = load_model(REPO / "models" / "melody-16bar-folk")
    tmp = Path(tempfile.mkdtemp())

    def find_fit(r):
        return cached_fit(r, model, [], search=(shipped_fits_dir(),))

    if args.chain:
        from melody_lc.chain.syntax import load_chains
        from melody_lc.rules import load_rules

        chains = load_chains(args.chain)
        lead = next(c for c in chains.chains if c.source.name == "generator")
        session = LiveSession(
            model,
            lead.source.values["rules"],
            LiveSettings(bpm=chains.bpm or 120),
            find_fit=find_fit,
            captures=tmp / "captures",
            chains=chains,
            prepare=lambda path: (load_rules(path), model, find_fit(load_rules(path))),
        )
    else:
        shutil.copy(REPO / "rules" / "any_key_major.rules", tmp / "any_key_major.rules")
        session = LiveSession(
            model, tmp / "any_key_major.rules", LiveSettings(bpm=240), find_fit=find_fit, captures=tmp / "captures"
        )
    app = LiveApp(session)
    width, height = (int(x) for x in args.size.split("x"))

    async def run() -> Path:
        async with app.run_test(size=(width, height)) as pilot:
            await pilot.pause(1.0)
            if args.chain:  # echo (the third row) bypassed, then a second to gather CPU figures
                await pilot.press("down", "down", "b")
                while session.current() is None or session.engine.step() < 24:
                    await pilot.pause(0.1)
                await pilot.pause(1.2)
            else:
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
