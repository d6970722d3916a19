"""Which change to the melody VAE pays on 2 CPU cores: each candidate trains from scratch for the
same time on one thread (two candidates at once, one per core), then is evaluated on the test split
as ``melody-lc evaluate`` does (teacher-forced and free-running accuracy, on notes too, and KL).

    python benchmarks/capacity_table.py [--minutes 30] [--windows 512] [NAME ...]

A candidate is a set of model-config overrides (``train --model-config``) and training options.
Each one trains into melody-lc's cache and is stopped the way Ctrl-C stops training (the checkpoint
is saved at a step boundary); its figures are kept there too, so a rerun only trains what is
missing. The CPU time each training process used is printed beside its steps: the comparison is
at equal CPU time, not equal steps. Early figures only say what pays in the first hour; the
shipped model trained for 8.4 hours. The candidates named "shipped ..." continue the shipped
model's committed training run (``train --from``: its weights, optimizer and step) for the same
time, as is or with a change that keeps every weight; their steps count from the shipped run's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SHIPPED_RUN = str(Path(__file__).resolve().parents[1] / "runs" / "melody-16bar-folk")  # trained 8.4 hours
CANDIDATES = {  # name -> (model-config overrides, further `melody-lc train` options, run continued or None)
    "default": ({}, [], None),
    "decoder 512": ({"decoder_size": 512}, [], None),
    "conductor 512": ({"conductor_size": 512}, [], None),
    "hierarchical encoder": ({"encoder": "hierarchical"}, [], None),
    "previous bar's last token": ({"bar_carry": True}, [], None),
    "free bits 1024, beta 0.1": ({"free_bits": 1024.0, "beta": 0.1}, [], None),
    "batch 32, lr 0.002": ({}, ["--batch-size", "32", "--lr", "0.002"], None),
    "parallel decoder": ({}, ["--preset", "parallel"], None),  # non-autoregressive: z alone writes every step
    "parallel decoder, 256 wide": ({"encoder_size": 256, "conductor_size": 256}, ["--preset", "parallel"], None),
    # a third of the parallel preset's arithmetic per melody, and fits (of a 256-wide z) of the shipped size
    "parallel decoder, z 256, 256 wide": (
        {"z_size": 256, "encoder_size": 256, "conductor_size": 256},
        ["--preset", "parallel"],
        None,
    ),
    # the parallel decoder with an autoregressive head (an LSTM over the steps; model.py)
    "parallel decoder + head 128, token dropout 0.5": (
        {"head_size": 128, "token_dropout": 0.5},
        ["--preset", "parallel"],
        None,
    ),
    # continuing the shipped run (its weights, optimizer and step) with changes that keep the weights
    "shipped, continued": ({}, [], SHIPPED_RUN),
    "shipped + previous bar's last token": ({"bar_carry": True}, [], SHIPPED_RUN),
    "shipped + free bits 1024, beta 0.1": ({"free_bits": 1024.0, "beta": 0.1}, [], SHIPPED_RUN),
    "shipped + token dropout 0.5": ({"token_dropout": 0.5}, [], SHIPPED_RUN),
    "shipped + token dropout 0.5, free bits 1024, beta 0.1": (
        {"token_dropout": 0.5, "free_bits": 1024.0, "beta": 0.1},
        [],
        SHIPPED_RUN,
    ),
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def run_dir(name: str, minutes: float = 30.0) -> Path:
    """Where candidate ``name`` trains for ``minutes`` CPU minutes (in melody-lc's cache)."""
    from melody_lc.paths import cache_dir

    return cache_dir() / "benchmarks" / f"capacity-{minutes:g}min" / slug(name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux: /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train(names: list[str], minutes: float, work) -> None:
    """Trains ``names`` side by side, one thread each, each stopped when it has used ``minutes`` of
    CPU time (so other work on the machine does not tilt the comparison); writes its CPU time."""
    procs = {}
    for name in names:
        overrides, options, start = CANDIDATES[name]
        out = work / slug(name)
        if out.exists():  # a run cut short earlier: its time is measured again
            shutil.rmtree(out)
        cmd = [sys.executable, "-m", "melody_lc", "train", "--out", str(out), "--steps", "1000000000"]
        cmd += ["--threads", "1", "--quiet", "--checkpoint-minutes", str(minutes + 5)]
        cmd += ["--model-config", json.dumps(overrides), *options, *(["--from", start] if start else [])]
        procs[name] = subprocess.Popen(cmd)
    running = dict(procs)
    while running:
        time.sleep(2)
        for name, p in list(running.items()):
            pid, status, _ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                raise SystemExit(f"{name}: training ended early (exit {os.waitstatus_to_exitcode(status)})")
            if cpu_seconds(p.pid) >= minutes * 60:
                p.send_signal(signal.SIGTERM)  # stops at the next step and saves, as Ctrl-C does
                del running[name]
    for name, p in procs.items():
        _, status, usage = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) not in (0, 130):  # 130: stopped as asked
            raise SystemExit(f"{name}: training failed")
        (work / slug(name) / "cpu.json").write_text(json.dumps({"cpu_seconds": usage.ru_utime + usage.ru_stime}))


def main() -> None:
    import torch

    from melody_lc.cli.data import default_corpus_out
    from melody_lc.melody.dataset import MelodyDataset
    from melody_lc.melody.evaluate import reconstruction_metrics
    from melody_lc.melody.hardware import describe_hardware, matmul_gflops
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS
    from melody_lc.melody.train import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"candidates (default: all): {', '.join(CANDIDATES)}")
    ap.add_argument("--minutes", type=float, default=30.0, help="CPU time of each candidate's training, one thread")
    ap.add_argument("--windows", type=int, default=512, help="test windows evaluated")
    args = ap.parse_args()
    names = args.names or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidates: {', '.join(unknown)}")
    work = run_dir(names[0], args.minutes).parent
    work.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not (work / slug(n) / "cpu.json").exists()]
    for i in range(0, len(todo), 2):
        train(todo[i : i + 2], args.minutes, work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the speed reference, on one thread as each candidate trained
    gflops = matmul_gflops()
    torch.set_num_threads(threads)
    test = MelodyDataset(default_corpus_out(list(DEFAULT_COLLECTIONS))).windows("test")[: args.windows]
    print(f"{describe_hardware()}: float32 matmul {gflops:.0f} GFLOP/s on 1 thread")
    print(f"each candidate trained for {args.minutes:g} CPU minutes on one thread; {len(test)} test windows")
    print("| candidate | steps | CPU min | teacher-forced | free-running | free-running notes | KL bits |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    # the reference every candidate is read against
    model, meta = load_model(SHIPPED_RUN)
    m = reconstruction_metrics(model, test)
    print(
        f"| shipped run as committed | {meta['steps']} | {meta['train_seconds'] / 60:.0f} (2 threads) | "
        f"{m['teacher_forced_accuracy']:.3f} | {m['free_running_accuracy']:.3f} | "
        f"{m['free_running_note_accuracy']:.3f} | {m['kl_bits']:.0f} |"
    )
    for name in names:
        model, meta = load_model(work / slug(name))
        cpu = json.loads((work / slug(name) / "cpu.json").read_text())["cpu_seconds"]
        m = reconstruction_metrics(model, test)
        print(
            f"| {name} | {meta['steps']} | {cpu / 60:.1f} | {m['teacher_forced_accuracy']:.3f} | "
            f"{m['free_running_accuracy']:.3f} | {m['free_running_note_accuracy']:.3f} | {m['kl_bits']:.0f} |"
        )


if __name__ == "__main__":
    main()
