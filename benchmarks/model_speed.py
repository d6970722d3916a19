"""Speed of the melody VAE on this machine: training tokens/s, sampling melodies/s, one-melody latency.

    python benchmarks/model_speed.py                          # the default preset
    python benchmarks/model_speed.py --preset paper --train-steps 2
    python benchmarks/model_speed.py --config '{"encoder": "hierarchical", "decoder_size": 256}'

Every figure is printed beside the float32 matmul GFLOP/s measured in the same run, so the ratio
(tokens/s per GFLOP/s) holds across machines better than the absolute figure. Random weights are
enough: speed does not depend on what the model has learned.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from melody_lc.melody import model as model_module
from melody_lc.melody.hardware import bf16_lstm_works, cpu_has_fast_bf16, describe_hardware, matmul_gflops
from melody_lc.melody.model import PRESETS, MelodyVAE, VAEConfig, build_model, vae_loss


def time_train(model: MelodyVAE, batch: int, steps: int, bf16: bool) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(np.where(rng.random((batch, 256)) < 0.3, rng.integers(50, 80, (batch, 256)), 128))
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, mu, sigma = model(tokens)
        loss = vae_loss(logits, tokens, mu, sigma, model.config)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def time_sample(model: MelodyVAE, batch: int, repeats: int, bf16: bool) -> float:
    gen = torch.Generator().manual_seed(0)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model.sample(batch, 1.0, gen)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.sample(batch, 1.0, gen)
            times.append(time.perf_counter() - t)
    model.train()
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--config", help="JSON overrides of the preset's config")
    ap.add_argument("--batch", type=int, default=64, help="training batch")
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-bf16", action="store_true", help="fp32 only, also where the CPU has bf16")
    args = ap.parse_args()

    cfg = PRESETS[args.preset]
    if args.config:
        cfg = VAEConfig.from_dict({**cfg.to_dict(), **json.loads(args.config)})
    torch.manual_seed(0)
    model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    gflops = matmul_gflops()
    print(f"{describe_hardware()}; float32 matmul {gflops:.0f} GFLOP/s")
    print(f"model {args.preset} {json.dumps(cfg.to_dict())}: {params / 1e6:.2f} M parameters")
    # bf16 where it runs at the hardware's speed (and, for a model with an LSTM, where oneDNN has a bf16 LSTM)
    no_bf16 = (
        "this CPU has no AVX-512 BF16 or AMX: bf16 would be emulated"
        if not cpu_has_fast_bf16()
        else "this CPU has no bf16 LSTM in torch's oneDNN"
        if (cfg.decoder == "lstm" or cfg.head_size) and not bf16_lstm_works()
        else None
    )
    no_bf16 = no_bf16 or ("not asked for (--no-bf16)" if args.no_bf16 else None)
    precisions = (False,) if no_bf16 else (False, True)
    if no_bf16:
        print(f"bf16: not measured ({no_bf16})")
    if not args.no_train:
        for bf16 in precisions:
            dt = time_train(model, args.batch, args.train_steps, bf16)
            tps = args.batch * 256 / dt
            print(
                f"train  {'bf16' if bf16 else 'fp32'}: {dt:.3f} s/step at batch {args.batch}, {tps:,.0f} tokens/s, "
                f"{tps / gflops:,.1f} tokens/s per GFLOP/s"
            )
    for bf16 in precisions:
        dt = time_sample(model, 256, 3, bf16)
        one = time_sample(model, 1, 10, bf16)
        print(
            f"sample {'bf16' if bf16 else 'fp32'}: {256 / dt:,.0f} melodies/s at batch 256 "
            f"({256 / dt / gflops:.2f} per GFLOP/s); one melody {one * 1000:.1f} ms"
        )
    if (
        cfg.decoder == "lstm" and not cfg.bar_carry
    ):  # the same weights, each bar started from the previous bar's last token
        carry = build_model(replace(cfg, bar_carry=True))
        carry.load_state_dict(model.state_dict())
        pairs = [(time_sample(model, 256, 1, False), time_sample(carry, 256, 1, False)) for _ in range(3)]
        base, dt_carry = (min(t) for t in zip(*pairs))  # interleaved: a noisy machine tilts neither
        print(
            f"sample fp32 with bar_carry (bars in sequence): {256 / dt_carry:,.0f} melodies/s at batch 256, "
            f"{dt_carry / base:.1f}x the time of the bars at once ({256 / base:,.0f} melodies/s, same run)"
        )
    if cfg.decoder == "lstm" and not cfg.bar_carry:  # the bars at once, in blocks of rows or in one block
        blocks = model_module.PARALLEL_ROWS

        def timed(rows: int) -> float:
            model_module.PARALLEL_ROWS = rows
            try:
                return time_sample(model, 256, 1, False)
            finally:
                model_module.PARALLEL_ROWS = blocks

        pairs = [(timed(blocks), timed(256 * 16)) for _ in range(3)]
        base, whole = (min(t) for t in zip(*pairs))
        print(
            f"sample fp32, the bars at once in blocks of {blocks} rows: {whole / base:.2f}x as fast as all "
            f"{256 * 16} rows in one block ({256 / base:,.0f} against {256 / whole:,.0f} melodies/s, same run)"
        )


if __name__ == "__main__":
    main()
