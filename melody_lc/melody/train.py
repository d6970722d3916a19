"""Training the melody VAE: Adam, learning-rate decay, clipping, transposition, exact resume, DDP.

One process (CPU or one GPU) or many through PyTorch's own DDP under ``torchrun`` (the same
command). The global batch is drawn identically on every process from the seed, and each process
takes its share of the rows, so N processes compute exactly the gradient of one process on the
whole batch.

A run directory holds the checkpoint (see :mod:`melody_lc.checkpoint`): weights, config, the
optimizer's moments, the step, the data position and every RNG state, plus ``log.jsonl`` with the
loss terms. Resuming continues bit for bit where the checkpoint was taken, after Ctrl-C or SIGTERM
too: in one process a signal abandons the step in progress at once and puts its data position and
RNGs back (one that comes during the optimizer's update waits for it to end); under DDP every
process finishes the step, and all agree to stop after it. Either way the checkpoint holds the
state after a whole step, so an interrupted run resumed ends with the very weights of an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from melody_lc import checkpoint
from melody_lc.melody.encoding import NUM_PITCHES
from melody_lc.melody.hardware import use_bf16
from melody_lc.melody.model import (
    ADDED_WEIGHTS,
    GROWTH,
    WEIGHT_FREE,
    MelodyVAE,
    VAEConfig,
    build_model,
    grows_from,
    kl_nats,
    same_weights,
    vae_loss,
)

KIND = "melody-vae"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch_size: int = 64  # global batch (split over DDP processes)
    lr: float = 1e-3
    lr_decay: float = 0.9999  # per step, exponential (MusicVAE)
    min_lr: float = 1e-5
    clip: float = 1.0  # gradient norm
    transpose: int = 5  # random transposition in [-k, k] semitones, kept inside 0-127
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    seed: int = 0
    precision: str = "auto"  # "bf16" (autocast), "fp32", or "auto": bf16 on CUDA and on CPUs with AMX/AVX-512 BF16

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})


# What a run is: resuming with other values of these would not continue it but start another run.
RUN_DEFINING = ("batch_size", "lr", "lr_decay", "min_lr", "clip", "transpose", "seed")


class _StopRequest:
    """Ctrl-C / SIGTERM while training. ``may_abort(again)`` says whether the work in progress may be
    abandoned at once (``again``: this is not the first signal); otherwise a signal only asks to stop
    at the next step boundary. Only the main thread receives signals, so elsewhere this does nothing."""

    def __init__(self, may_abort: Callable[[bool], bool]) -> None:
        self.may_abort = may_abort
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> _StopRequest:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        again, self.requested = self.requested, True
        if self.may_abort(again):
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def transpose_batch(tokens: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each melody by a random number of semitones in [-k, k] that keeps it inside 0-127."""
    if k <= 0:
        return tokens
    t = tokens.astype(np.int16)
    is_note = t < NUM_PITCHES
    low = np.where(is_note, t, 999).min(1)
    high = np.where(is_note, t, -1).max(1)
    lo_shift = np.where(low == 999, 0, np.maximum(-k, -low))
    hi_shift = np.where(high < 0, 0, np.minimum(k, 127 - high))
    shift = lo_shift + np.floor(rng.random(len(t)) * (hi_shift - lo_shift + 1)).astype(np.int16)
    return np.where(is_note, t + shift[:, None], t).astype(np.int64)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)  # NCCL's collectives (the barrier too) then use this process's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank)


class Trainer:
    """Owns the model, optimizer, data order and RNGs; ``run()`` trains to ``config.steps``."""

    def __init__(
        self,
        windows: np.ndarray,
        model_config: VAEConfig,
        config: TrainConfig,
        out: str | os.PathLike,
        resume: bool = False,
        meta: dict | None = None,
        progress: Callable[[dict], None] | None = None,
        start_from: str | os.PathLike | None = None,
        init_from: str | os.PathLike | None = None,
    ) -> None:
        """``start_from``: another run's checkpoint, continued (weights, optimizer, step, data order)
        into ``out`` with ``model_config``, which may differ from its own only in ``WEIGHT_FREE``.
        ``init_from``: a model's or run's weights only, the start of a new run (step 0, a fresh
        optimizer); ``model_config`` may also add ``ADDED_WEIGHTS`` (see :func:`grows_from`)."""
        self.dist = _setup_distributed()
        if config.batch_size % self.dist.world:
            raise ValueError(f"batch size {config.batch_size} does not split over {self.dist.world} processes")
        if len(windows) < config.batch_size:
            raise ValueError(f"{len(windows)} training windows is fewer than one batch of {config.batch_size}")
        self.device = torch.device(f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu")
        self.windows, self.config, self.out = windows, config, Path(out)
        self.meta = dict(meta or {})
        self.progress = progress
        self.step, self.epoch, self.pos, self.elapsed = 0, 0, 0, 0.0
        self.log: list[dict] = []
        torch.manual_seed(config.seed)
        self.model = build_model(model_config).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.aug_rng = np.random.default_rng([config.seed, 1])
        self.noise = torch.Generator().manual_seed(config.seed + 2)
        # "step": may be abandoned and rolled back; "update": the optimizer is writing; "rollback",
        # "saving", "idle" (the log's bookkeeping): a signal waits for them to end
        self._phase = "idle"
        self._stop = _StopRequest(self._may_abort)
        self.saved_step: int | None = None  # the step of the last checkpoint written by this process
        self._stop_agreed = False
        self._window = {"acc": {}, "n": 0}  # the log entry being gathered (kept in checkpoints)
        self.resumed_compact = False
        if resume:
            self._load(self.out)
        elif start_from is not None:
            self._load(Path(start_from), other_run=True)
        elif init_from is not None:
            self._init(Path(init_from))
        self.bf16 = use_bf16(config.precision, self.device)
        self.net = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None
            )

    # -- data ------------------------------------------------------------------------------------
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.config.seed, 0, epoch]).permutation(len(self.windows))

    def _next_batch(self) -> np.ndarray:
        """The next global batch (same on every process); an epoch's tail shorter than a batch is skipped."""
        b = self.config.batch_size
        if self.pos + b > len(self.windows):
            self.epoch, self.pos = self.epoch + 1, 0
        idx = self._order(self.epoch)[self.pos : self.pos + b]
        self.pos += b
        return transpose_batch(self.windows[idx], self.config.transpose, self.aug_rng)

    def lr_at(self, step: int) -> float:
        return max(self.config.min_lr, self.config.lr * self.config.lr_decay**step)

    # -- one step --------------------------------------------------------------------------------
    def train_step(self) -> dict:
        """One optimizer step. A failure before the update (an interrupt, out of memory) puts the data
        position and the RNGs back as they were, so the state stays that of the last whole step."""
        before = self._draw_state()
        self._phase = "step"
        try:
            if self.dist.world == 1 and self._stop.requested:  # came just before the step began
                raise KeyboardInterrupt
            batch = self._next_batch()
            eps = torch.randn(len(batch), self.model.config.z_size, generator=self.noise)
            rows = slice(self.dist.rank, None, self.dist.world)
            tokens = torch.from_numpy(np.ascontiguousarray(batch[rows])).to(self.device)
            eps = eps[rows].to(self.device)
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step)
            self.model.train()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits, mu, sigma = self.net(tokens, eps=eps)
            kl_reference = None
            if self.dist.world > 1:  # the free-bits threshold is judged on the whole batch's KL
                kl_reference = self._mean_over_processes(kl_nats(mu, sigma).detach())
            terms = vae_loss(logits, tokens, mu, sigma, self.model.config, kl_reference)
            self.opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
            self._phase = "update"  # from here a signal waits: the update is not abandoned halfway
        except BaseException:
            if self._phase == "step":
                self._phase = "rollback"
                self._restore_draw_state(before)
                self._phase = "idle"
            raise
        self.opt.step()
        self.step += 1
        self._phase = "idle"
        with torch.no_grad():
            is_note = tokens < NUM_PITCHES
            note_hits = (logits.argmax(-1)[is_note] == tokens[is_note]).sum()
            figures = torch.stack(
                [v.detach().float().to(self.device) for v in terms.values()]
                + [
                    note_hits.float(),
                    is_note.sum().float(),
                    torch.tensor(float(self._stop.requested), device=self.device),
                ]
            )
            if self.dist.world > 1:  # the log covers the whole batch; every process learns of a stop
                import torch.distributed as dist

                dist.all_reduce(figures)
                figures[: len(terms)] /= self.dist.world
        out = dict(zip(terms, figures[: len(terms)].tolist(), strict=True))
        hits, notes, stops = figures[len(terms) :].tolist()
        out["grad_norm"] = float(grad_norm)
        out["lr"] = self.lr_at(self.step - 1)
        if notes:
            out["note_accuracy"] = hits / notes
        self._stop_agreed = stops > 0
        return out

    def _may_abort(self, again: bool) -> bool:
        """A signal abandons only a step (rolled back): in one process the first signal, under DDP
        (where the others would wait for this one) only a second."""
        return self._phase == "step" and (again or self.dist.world == 1)

    def _mean_over_processes(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        x = x.clone()
        dist.all_reduce(x)
        return x / self.dist.world

    def _draw_state(self) -> tuple:
        return (self.epoch, self.pos, self.aug_rng.bit_generator.state, self.noise.get_state(), torch.get_rng_state())

    def _restore_draw_state(self, state: tuple) -> None:
        self.epoch, self.pos, self.aug_rng.bit_generator.state = state[0], state[1], state[2]
        self.noise.set_state(state[3])
        torch.set_rng_state(state[4])

    def run(self) -> None:
        """Train to ``config.steps``, checkpointing every few minutes, at the end, and on Ctrl-C or
        SIGTERM (after the last whole step; then KeyboardInterrupt is raised)."""
        last_save = time.monotonic()
        t_start = time.monotonic() - self.elapsed
        tokens_done = 0
        t_window = time.monotonic()
        self._stop_agreed = False
        with self._stop:  # signals are taken as described above while training and while saving at the end
            finished = False
            try:
                while self.step < self.config.steps and not self._stop_agreed:
                    if self.dist.world == 1 and self._stop.requested:  # came between steps
                        self._stop_agreed = True
                        break
                    terms = self.train_step()
                    tokens_done += self.config.batch_size * 256
                    acc = self._window["acc"]
                    self._window = {
                        "acc": {k: acc.get(k, 0.0) + v for k, v in terms.items()},
                        "n": self._window["n"] + 1,
                    }
                    if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                        now = time.monotonic()
                        n = self._window["n"]
                        entry = {
                            "step": self.step,
                            **{k: round(v / n, 5) for k, v in self._window["acc"].items()},
                            "tokens_per_s": round(tokens_done / max(now - t_window, 1e-9), 1),
                        }
                        self.log.append(entry)
                        self._window, tokens_done, t_window = {"acc": {}, "n": 0}, 0, now
                        if self.progress is not None and self.dist.main:
                            self.progress(entry)
                    if time.monotonic() - last_save > 60 * self.config.checkpoint_minutes:
                        self.elapsed = time.monotonic() - t_start
                        self.save()
                        last_save = time.monotonic()
                finished = True
            finally:  # also on errors and interrupts: keep the work of every whole step
                self.elapsed = time.monotonic() - t_start
                if self._phase != "update":
                    self.save()
            if finished and self.dist.world > 1:  # only when every process got here the same way
                import torch.distributed as dist

                dist.barrier()
                # The process group goes before the interpreter does: left to the exit, gloo's threads
                # could abort a process ("terminate called without an active exception", seen once in CI).
                dist.destroy_process_group()
        if self._stop_agreed and self.step < self.config.steps:
            raise KeyboardInterrupt

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self) -> None:
        """Write the checkpoint (rank 0); signals wait until it is written."""
        if not self.dist.main:
            return
        phase, self._phase = self._phase, "saving"
        try:
            self._save()
        finally:
            self._phase = phase
        self.saved_step = self.step

    def _save(self) -> None:
        opt_state = self.opt.state_dict()
        tensors = {"rng.torch": torch.get_rng_state(), "rng.noise": self.noise.get_state()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        for idx, st in opt_state["state"].items():
            for k, v in st.items():
                tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "pos": self.pos,
            "elapsed_s": self.elapsed,
            "train_config": asdict(self.config),
            "aug_rng": self.aug_rng.bit_generator.state,
            "param_groups": opt_state["param_groups"],
            "num_windows": len(self.windows),
            "log_window": self._window,
        }
        meta = {**self.meta, "steps": self.step, "train_seconds": round(self.elapsed, 1)}
        log_text = "".join(json.dumps(e) + "\n" for e in self.log)
        checkpoint.save(
            self.out,
            KIND,
            self.model.config.to_dict(),
            self.model.state_dict(),
            meta=meta,
            state=state,
            state_tensors=tensors,
            extra_files={"log.jsonl": log_text},
        )

    def _init(self, path: Path) -> None:
        ck = checkpoint.load(path, KIND)  # float16 weights (a shipped model) load into float32 ones
        theirs = VAEConfig.from_dict(ck["config"])
        if not grows_from(theirs, self.model.config):
            raise checkpoint.CheckpointError(
                f"{path}: holds a model of another configuration; a run started from its weights {GROWTH}"
            )
        missing, _ = self.model.load_state_dict(ck["weights"], strict=False)  # grows_from: none unexpected
        mine = self.model.config
        self.meta["initialised_from"] = {
            "model": path.name,
            "steps": ck["meta"].get("steps"),
            "changed": {
                k: getattr(mine, k) for k in (*WEIGHT_FREE, *ADDED_WEIGHTS) if getattr(theirs, k) != getattr(mine, k)
            },
            "added_weights": len(missing),
        }

    def _load(self, path: Path, other_run: bool = False) -> None:
        ck = checkpoint.load(path, KIND, with_state=True)  # a damaged file is a CheckpointError
        theirs = VAEConfig.from_dict(ck["config"])
        if not (same_weights(theirs, self.model.config) if other_run else theirs == self.model.config):
            raise checkpoint.CheckpointError(
                f"{path}: holds a model of another configuration; "
                + (f"only {', '.join(WEIGHT_FREE)} may change" if other_run else "train into a new --out")
            )
        state, tensors = ck["state"], ck["state_tensors"]
        if state is None:
            raise checkpoint.CheckpointError(f"{path}: has no training state to resume from")
        saved = TrainConfig.from_dict(state.get("train_config", {}))
        changed = [k for k in RUN_DEFINING if getattr(saved, k) != getattr(self.config, k)]
        if changed:
            raise checkpoint.CheckpointError(
                f"{path}: was trained with "
                + ", ".join(f"{k} {getattr(saved, k)}" for k in changed)
                + "; resuming with other values would start another run (keep them, or train into a new --out)"
            )
        if state.get("num_windows") != len(self.windows):
            raise checkpoint.CheckpointError(
                f"{path}: was trained on {state.get('num_windows')} windows, this data has {len(self.windows)}"
            )
        self.model.load_state_dict(ck["weights"])
        opt_state = {"state": {}, "param_groups": state["param_groups"]}
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                opt_state["state"].setdefault(int(idx), {})[name] = v
        self.opt.load_state_dict(opt_state)
        torch.set_rng_state(tensors["rng.torch"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.noise.set_state(tensors["rng.noise"])
        self.aug_rng.bit_generator.state = state["aug_rng"]
        self.step, self.epoch, self.pos, self.elapsed = state["step"], state["epoch"], state["pos"], state["elapsed_s"]
        self._window = state.get("log_window") or {"acc": {}, "n": 0}
        self.resumed_compact = state.get("moments") == "bf16"  # Adam's moments were stored rounded
        log_path = checkpoint.resolve(path) / "log.jsonl"
        self.log = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
        self.meta = {**ck["meta"], **self.meta}
        if other_run:
            changed = {
                k: getattr(self.model.config, k)
                for k in WEIGHT_FREE
                if getattr(theirs, k) != getattr(self.model.config, k)
            }
            self.meta["continued_from"] = {"run": path.name, "step": self.step, "changed": changed}


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[MelodyVAE, dict]:
    """A trained VAE from a checkpoint directory (any of fp32/fp16 weights), in eval mode."""
    ck = checkpoint.load(path, KIND)
    model = build_model(VAEConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["weights"])
    return model.to(device).eval(), ck["meta"]
