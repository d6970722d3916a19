"""What the README's install commands cost: time and disk, in fresh virtual environments.

    python benchmarks/install_footprint.py                      # this checkout
    python benchmarks/install_footprint.py --package OLD_CHECKOUT --label before

For each install (the README's two commands: the package, and the package with its test extra;
also the package with the note-seq extra), a fresh venv gets ``pip install torch==2.13.0`` and then
the package, each timed, with pip's cache off so every wheel is fetched and unpacked again. Printed:
seconds for each step, the size of the venv's site-packages, the number of distributions, and the
largest ones (what the install carries besides torch).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TORCH = "torch==2.13.0"  # the README's pin: the CPU build


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(package: Path, extra: str) -> dict:
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        t = time.perf_counter()
        subprocess.run([*pip, TORCH], check=True, env=env, stderr=subprocess.DEVNULL)
        torch_s = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([*pip, f"{package}{extra}"], check=True, env=env, stderr=subprocess.DEVNULL)
        package_s = time.perf_counter() - t
        site = next((venv / "lib").glob("python3*/site-packages"))
        by_dist = {}
        for info in site.glob("*.dist-info"):
            name = info.name.split("-")[0]
            files = [line.split(",")[0] for line in (info / "RECORD").read_text().splitlines() if line]
            by_dist[name] = sum((site / f).stat().st_size for f in files if (site / f).is_file())
        return {"torch_s": torch_s, "package_s": package_s, "size": dir_size(site), "dists": by_dist}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", default=str(Path(__file__).resolve().parents[1]), help="the checkout to install")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument(
        "--extras",
        nargs="+",
        default=["", "[test]", "[note-seq]"],
        help="'' is `pip install .`; '[test]' the README's test install",
    )
    args = ap.parse_args()
    package = Path(args.package).resolve()
    extras = [e for e in args.extras if e != "[note-seq]" or "note-seq =" in (package / "pyproject.toml").read_text()]
    from melody_lc.melody.hardware import describe_hardware

    print(
        f"{args.label}: {package.name}; {describe_hardware()}, {os.cpu_count()} cores; "
        f"python {sys.version.split()[0]}; pip cache off"
    )
    print(
        "| install | torch s | package s | site-packages MB | without torch MB | distributions | largest besides torch |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for extra in extras:
        r = install(package, extra)
        torch_mb = sum(v for k, v in r["dists"].items() if k.lower().startswith(("torch", "nvidia", "triton"))) / 1e6
        rest = sorted(((v, k) for k, v in r["dists"].items() if not k.lower().startswith("torch")), reverse=True)[:6]
        print(
            f"| `pip install .{extra}` | {r['torch_s']:.0f} | {r['package_s']:.0f} | {r['size'] / 1e6:.0f} | "
            f"{r['size'] / 1e6 - torch_mb:.0f} | {len(r['dists'])} | "
            f"{', '.join(f'{k} {v / 1e6:.0f}' for v, k in rest)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
