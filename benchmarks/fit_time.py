"""How long a new rules file takes to fit (issue 15's target: a three-rule file in at most 90 s on
2 cores), and what the critics' training step costs.

    python benchmarks/fit_time.py [--steps 100] [--rules FILE ...]

1. The critic step of a fit (four reward critics and the realism critic, batch 256, with the
   gradient penalty, then Adam), timed two ways in the same run: the ensemble's members one after
   the other with Adam parameter by parameter (the fit before it ran them at once), and the
   members as one batched network (``CriticEnsemble.all_logits``) with fused Adam (the fit now).
2. Fits of new three-rule files from nothing (a fresh cache; the shipped fits are not searched),
   with the statistics shipped beside the model: each stage's seconds (a second stage runs where
   the first actor alone obeys every rule in less than 80% of fresh melodies), the total, and the
   actor alone's satisfaction as the fit measured it. By default the files of issue 15's report
   (D dorian with a density and a range, E minor pentatonic with a leap and a range) and a third.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from melody_lc.constrain import fit_rules, load_fit_stats
from melody_lc.engine import FitConfig
from melody_lc.engine.losses import GRADIENT_PENALTY_WEIGHT, critic_loss, gradient_penalty
from melody_lc.engine.nets import Critic, CriticEnsemble
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model
from melody_lc.rules import load_rules
from melody_lc.rules.syntax import strip_comment

NEW_FILES = {
    "d_dorian_density_range": "key: D dorian\ndensity: 2 .. 4 notes per bar\nrange: D4 .. D6\n",
    "e_minor_pentatonic_leap_range": "key: E minor pentatonic\nleap: <= 5 semitones\nrange: E4 .. E6\n",
    "d_major_leap_range": "key: D major\nleap: <= 5 semitones\nrange: D4 .. D6\n",
}


def critic_step_ms(z_size: int, batched: bool, steps: int, config: FitConfig = FitConfig()) -> float:
    """Milliseconds per critic step, the fit's sizes, members one by one or at once."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    K, B = 3, config.batch_size
    critic = CriticEnsemble(z_size, K, 0, config.hidden, config.layers, config.ensemble, config.pessimism)
    realism = Critic(z_size, 1, 0, config.hidden, config.layers)
    params = list(critic.parameters()) + list(realism.parameters())
    opt = torch.optim.Adam(params, lr=config.lr, fused=batched)
    buf, rewards, real_z = torch.randn(8192, z_size), torch.rand(8192, K), torch.randn(4096, z_size)

    def step() -> None:
        idx = torch.randint(0, len(buf), (B,), generator=g)
        zb, perm = buf[idx], torch.randperm(B, generator=g)
        if batched:
            E = len(critic.members)
            loss = sum(critic_loss(logits, rewards[idx]) for logits in critic.all_logits(zb))
            pairs = zb.expand(E, *zb.shape), zb[perm].expand(E, *zb.shape)
            loss = loss + GRADIENT_PENALTY_WEIGHT * gradient_penalty(critic.all_logits, *pairs, None, g)
        else:
            loss = 0.0
            for member in critic.members:
                loss = loss + critic_loss(member(zb), rewards[idx])
                loss = loss + GRADIENT_PENALTY_WEIGHT * gradient_penalty(member, zb, zb[perm], None, g)
        real, fake = real_z[idx % len(real_z)], torch.randn(B, z_size, generator=g)
        logits = realism(torch.cat([real, fake]))
        labels = torch.cat([torch.ones(B, 1), torch.zeros(B, 1)])
        loss = (
            loss
            + critic_loss(logits, labels)
            + GRADIENT_PENALTY_WEIGHT * gradient_penalty(realism, real, fake, None, g)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(10):  # warm up
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps * 1000


def main() -> None:
    from melody_lc.cli.model import default_model_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="critic steps timed per way (after 10 to warm up)")
    ap.add_argument("--rules", nargs="+", help="rules files to fit (default: three new three-rule files)")
    args = ap.parse_args()

    print(
        f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    model, _ = load_model(default_model_dir())
    stats = load_fit_stats(default_model_dir(), model)

    z_size = model.config.z_size
    print("\ncritic step (4 reward critics + realism, batch 256, gradient penalty, Adam), median of 3 turns:")
    times = {False: [], True: []}
    for _ in range(3):  # turns back to back: a shared machine's bursts fall on both ways
        for batched in (False, True):
            times[batched].append(critic_step_ms(z_size, batched, args.steps))
    one, once = sorted(times[False])[1], sorted(times[True])[1]
    print(f"  members one by one, Adam per parameter: {one:.1f} ms")
    print(f"  members at once, fused Adam (the fit):  {once:.1f} ms ({one / once:.2f}x as fast)")

    with tempfile.TemporaryDirectory() as tmp:
        files = args.rules or []
        if not files:
            for name, text in NEW_FILES.items():
                (Path(tmp) / f"{name}.rules").write_text(text)
                files.append(str(Path(tmp) / f"{name}.rules"))
        print("\n| rules | stages (s each) | fit | actor alone (as the fit measured it) |")
        print("|---|---|---:|---:|")
        for path in files:
            rules = load_rules(path)
            t = time.perf_counter()
            fitted = fit_rules(rules, model, stats, FitConfig(), cache_dir=Path(tmp) / "fits")
            total = time.perf_counter() - t
            per_stage = {}
            for entry in fitted.meta["history"]:
                if "seconds" in entry:
                    per_stage[entry["stage"]] = per_stage.get(entry["stage"], 0.0) + entry["seconds"]
            stages = " + ".join(f"{s:.1f}" for s in per_stage.values())
            text = " / ".join(strip_comment(r.text).strip() for r in rules.rules)
            print(f"| `{text}` | {stages} | {total:.1f} s | {fitted.meta['satisfaction']:.1%} |")


if __name__ == "__main__":
    main()
