"""``melody-lc train``: train the melody VAE (resumable; DDP under torchrun), or compact a checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from melody_lc.choices import PRECISIONS
from melody_lc.cli import checks


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        help="train the melody VAE (resumable; DDP under torchrun)",
        description="Train the hierarchical melody VAE. Multi-GPU / multi-machine: run the same command "
        "under torchrun, e.g. `torchrun --nproc-per-node=4 -m melody_lc train ...`.",
    )
    t.add_argument(
        "--preset",
        help="model preset: default, paper, parallel, tiny (default: default; on --resume, the checkpoint's)",
    )
    t.add_argument(
        "--model-config", metavar="JSON", help='overrides of the preset, e.g. \'{"encoder": "hierarchical"}\''
    )
    t.add_argument("--data", metavar="PATH", help="dataset directory (default: the music21 corpus dataset)")
    t.add_argument("--steps", type=int, default=20_000, help="train until this step (default 20000)")
    t.add_argument(
        "--out",
        metavar="DIR",
        type=checks.out_folder,
        default="runs/melody-vae",
        help="checkpoint directory (default runs/melody-vae)",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the checkpoint in --out exactly (with its model, batch size, learning rate and seed)",
    )
    t.add_argument(
        "--from",
        dest="start_from",
        metavar="DIR",
        help="continue another run's checkpoint (weights, optimizer, step) into a new --out; --model-config "
        "may change free_bits, beta, dropout, bar_carry and token_dropout",
    )
    t.add_argument(
        "--init",
        metavar="DIR",
        help="start a new run (step 0, a fresh optimizer) from the weights of a model or run in DIR; "
        "--model-config may change what --from allows and add the parallel decoder's head (head_size), "
        "which starts as nothing: the run starts as DIR's model",
    )
    t.add_argument(
        "--compact",
        action="store_true",
        help="train nothing: rewrite the checkpoint in --out to be committed (Adam's moments in bf16, "
        "2/3 of the size; resuming it continues closely, not bit for bit)",
    )
    t.add_argument("--batch-size", type=int, help="global batch (default 64)")
    t.add_argument("--lr", type=float, help="initial learning rate (default 0.001)")
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="bf16 autocast (auto: on CUDA and on CPUs with AMX or AVX-512 BF16)",
    )
    t.add_argument("--checkpoint-minutes", type=float, default=5.0)
    t.add_argument("--seed", type=int, help="default 0")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    import torch

    from melody_lc import checkpoint
    from melody_lc.cli import CLIError
    from melody_lc.cli.model import _dataset
    from melody_lc.melody.hardware import describe_hardware, matmul_gflops
    from melody_lc.melody.model import GROWTH, PRESETS, WEIGHT_FREE, VAEConfig, grows_from, same_weights
    from melody_lc.melody.train import KIND, RUN_DEFINING, TrainConfig, Trainer

    out = Path(args.out)
    if args.compact:
        if not checkpoint.exists(out):
            raise CLIError(f"{out}: no checkpoint to compact")
        before, after = checkpoint.compact(out, KIND)
        print(f"{out}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (Adam's moments in bf16)")
        return 0
    if checkpoint.exists(out) and not args.resume:
        raise CLIError(f"{out}: holds a checkpoint already; add --resume to continue it, or choose another --out")
    if args.resume and not checkpoint.exists(out):
        raise CLIError(f"{out}: no checkpoint to resume")
    if args.start_from is not None and (args.resume or not checkpoint.exists(args.start_from)):
        raise CLIError(
            "--from: give a checkpoint directory, and leave out --resume"
            if args.resume
            else f"{args.start_from}: no checkpoint to continue"
        )
    if args.init is not None and (args.resume or args.start_from is not None or not checkpoint.exists(args.init)):
        raise CLIError(
            f"{args.init}: no model to start from"
            if not (args.resume or args.start_from is not None)
            else "--init starts a new run: leave out --resume and --from"
        )
    given = {
        k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}.items() if v is not None
    }
    checkpoint.check_target(out, KIND)
    source = out if args.resume else args.start_from
    saved = checkpoint.load(source, KIND, with_state=True, tensors=False) if source is not None else None
    if saved is not None:  # the run's own settings; an option that says otherwise is a mistake
        if saved["state"] is None:
            raise CLIError(f"{source}: has no training state to resume from")
        run = TrainConfig.from_dict(saved["state"].get("train_config", {}))
        for k, v in given.items():
            if getattr(run, k) != v:
                raise CLIError(
                    f"{source}: was trained with --{k.replace('_', '-')} {getattr(run, k)}; continuing keeps it "
                    "(leave the option out, or train a new run)"
                )
        given = {k: getattr(run, k) for k in RUN_DEFINING}
    base = checkpoint.load(args.init, KIND, tensors=False) if args.init is not None else None
    preset = args.preset or next((c["meta"].get("preset", "?") for c in (saved, base) if c is not None), "default")
    if args.preset is not None and args.preset not in PRESETS:
        raise CLIError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    if (
        saved is not None or base is not None
    ):  # the model continued or grown; --preset / --model-config are checked below
        model_config = VAEConfig.from_dict((saved or base)["config"])
        asked = PRESETS[args.preset] if args.preset is not None else model_config
    else:
        model_config = asked = PRESETS[preset]
    if args.model_config:
        try:
            asked = VAEConfig.from_dict({**asked.to_dict(), **json.loads(args.model_config)})
        except (ValueError, TypeError) as e:
            raise CLIError(f"--model-config: {e}") from None
    if args.start_from is not None and not same_weights(asked, model_config):
        raise CLIError(f"--model-config: continuing {source} may change only {', '.join(WEIGHT_FREE)}")
    if base is not None and not grows_from(model_config, asked):
        raise CLIError(f"--model-config: a run started from {args.init} {GROWTH}")
    if args.resume and asked != model_config:
        raise CLIError(
            f"{out}: holds a model of another configuration ({json.dumps(saved['config'])}); resuming keeps "
            "it (leave out --preset and --model-config, or train into a new --out)"
        )
    model_config = asked
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = _dataset(args.data)
    windows = ds.windows("train")
    config = TrainConfig(
        **{**given, "steps": args.steps, "precision": args.precision, "checkpoint_minutes": args.checkpoint_minutes}
    )
    meta = {
        "preset": preset,
        "data": ds.manifest["source"],
        "data_fingerprint": ds.manifest["fingerprint"],
        "train_windows": int(len(windows)),
        "hardware": describe_hardware(),
        "batch_size": config.batch_size,
    }
    bar = None

    def progress(entry: dict) -> None:
        if bar is not None:
            bar.n = entry["step"]
            bar.set_postfix(
                loss=f"{entry['loss']:.1f}",
                acc=f"{entry['accuracy']:.3f}",
                note_acc=f"{entry.get('note_accuracy', 0):.3f}",
                kl_bits=f"{entry['kl_bits']:.0f}",
                tok_s=f"{entry['tokens_per_s']:.0f}",
                refresh=True,
            )

    main_cpu = os.environ.get("RANK", "0") == "0" and not torch.cuda.is_available()
    gflops = matmul_gflops(512) if main_cpu else 0.0  # the speed reference, before training starts (own RNG)
    try:
        trainer = Trainer(
            windows,
            model_config,
            config,
            out,
            resume=args.resume,
            meta=meta,
            progress=progress,
            start_from=args.start_from,
            init_from=args.init,
        )
    except ValueError as e:
        raise CLIError(str(e)) from None
    if trainer.dist.main:
        speed = f"; this CPU: {gflops:.0f} GFLOP/s float32 matmul" if gflops else ""
        print(
            f"training {preset} on {len(windows):,} windows, {trainer.device}, "
            f"{'bf16' if trainer.bf16 else 'fp32'}, {trainer.dist.world} process(es); from step {trainer.step}{speed}",
            file=sys.stderr,
        )
        if trainer.resumed_compact:
            print(
                "melody-lc: note: this checkpoint was compacted (Adam's moments in bf16): the run continues "
                "closely, not bit for bit; its next checkpoint is exact again",
                file=sys.stderr,
            )
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=config.steps, initial=trainer.step, unit="step", dynamic_ncols=True, smoothing=0.05)
    try:
        trainer.run()
    except KeyboardInterrupt:
        if trainer.dist.main:
            saved = (
                f"checkpoint of step {trainer.saved_step} saved in {out} (continue with --resume)"
                if trainer.saved_step is not None
                else "no checkpoint written"
            )
            print(f"\nmelody-lc: interrupted at step {trainer.step}; {saved}", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    if trainer.dist.main:
        recent = [e["tokens_per_s"] for e in trainer.log[-20:] if "tokens_per_s" in e]
        rate = f"; {sum(recent) / len(recent):,.0f} tokens/s" if recent else ""
        print(f"done: step {trainer.step}, checkpoint in {out}{rate}")
    return 0
