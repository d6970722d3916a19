"""The hierarchical LSTM melody VAE (the paper's melody model; MusicVAE's hierarchical decoder).

Shapes: B melodies, T = 256 steps = 16 bars x 16 steps, V = 130 classes, Z latent size.

    tokens (B, 256) --one-hot--> BiLSTM over the 256 steps --final states--> linear -> mu, sigma (B, Z)
        (or, with ``encoder="hierarchical"``: a BiLSTM over each bar's 16 steps, B*16 rows at once,
        then a BiLSTM over the 16 bar summaries: 32 sequential steps instead of 256)
    z (B, Z) --linear, tanh--> initial state of the 2-layer conductor LSTM
             --16 steps, zero input--> bar embeddings (B, 16, C)
    each bar embedding --linear, tanh--> initial state of the 2-layer bar LSTM, which emits the
             bar's 16 steps autoregressively; its input at each step is the previous output
             (one-hot; zeros at a bar's first step, or with ``bar_carry`` the previous bar's last
             token) concatenated with the bar embedding.

Bars restart from their embedding, so during training all 16 bars run as one batch of B*16
sequences of 16 steps, and sampling is a loop of 16 steps over B*16 rows (not 256 steps; on a
CPU in blocks of PARALLEL_ROWS rows); with
``bar_carry`` sampling runs the bars in sequence (256 steps over B rows), training still at once.

:class:`ParallelMelodyVAE` (``decoder="parallel"``, the ``parallel`` preset) writes every step from z
at once, with no previous token to lean on, so z must carry the melody (free-running decoding is
teacher-forced decoding; what that buys and costs is measured in docs/training.md):

    tokens (B, 256) --embedding (E)--> each bar's 16 steps as one vector (B, 16, 16E)
             --MLP--> (B, 16, H) --convolutions over the 16 bars--> flatten -> linear -> mu, sigma
    z --linear--> (B, 16, C) --convolutions over the bars--> bar embeddings
      --MLP, per bar--> logits of its 16 steps (B, 256, V)

A free-running decode draws the 256 steps from those logits; under the rules' constraints it draws
them in order, each step from its logits restricted to what the constraints allow.

With ``head_size`` > 0 (the parallel decoder with an autoregressive head), a small LSTM reads the
steps in order and adds a correction to each step's logits:

    input_t = [embedding of token t-1 (zeros at t = 0 and, in training, at a token_dropout share
               of steps), softmax of the parallel logits at t]  --LSTM (head_size)--> linear -> + logits_t

Its output layer starts at zero, so it starts as the parallel model; it learns what the previous
tokens tell beyond z (a held note is held on, a phrase's rhythm goes on). Decoding runs the 256 steps in
sequence over B rows.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from melody_lc.melody.encoding import BAR_STEPS, NUM_BARS, NUM_CLASSES, STEPS
from melody_lc.melody.steer import Steer, draw, uniforms

LOG2 = math.log(2.0)
# bar rows per block of a decode with the bars at once: a block's LSTM state stays in a CPU's caches,
# where all of a large batch's bars at once would not (benchmarks/model_speed.py measures both;
# docs/figures.md). A multiple of 16, so that a block holds whole melodies (a steer by bars needs them).
PARALLEL_ROWS = 1024


@dataclass(frozen=True)
class VAEConfig:
    """Sizes and loss settings; saved inside every checkpoint so a model rebuilds from its file."""

    z_size: int = 256
    # "flat": one BiLSTM over the 256 steps (the paper's); "hierarchical": see above; "patches": the
    # parallel model's bar patches and convolutions (with decoder="parallel" only)
    encoder: str = "flat"
    encoder_size: int = 256  # per direction
    encoder_layers: int = 1
    conductor_size: int = 256
    conductor_layers: int = 2
    decoder_size: int = 256
    decoder_layers: int = 2
    free_bits: float = 256.0  # KL allowance in bits (MusicVAE hierdec-mel_16bar: 256 bits)
    beta: float = 0.2  # weight of the KL beyond the free bits (MusicVAE: 0.2)
    dropout: float = 0.0
    # each bar's first input is the previous bar's last token instead of zeros (then the bars of a
    # free-running decode run in sequence, 256 steps over B rows, not 16 steps over B*16)
    bar_carry: bool = False
    # in training, the share of steps whose previous-token input is zeroed (as at a bar's first step):
    # Bowman et al.'s word dropout, so the decoder must take from z what it can no longer read off
    # its own last output (training only; decoding always feeds the previous token)
    token_dropout: float = 0.0
    # "lstm": the hierarchical LSTM decoder (conductor and bar LSTMs); "parallel": ParallelMelodyVAE
    # (then conductor_size/conductor_layers are the bar embeddings' width and convolutions, and
    # decoder_size the hidden width of the per-bar output MLP)
    decoder: str = "lstm"
    # the parallel decoder only: with head_size > 0, an LSTM of that size runs over the 256 steps and
    # corrects each step's logits from the tokens before it (its input: the previous token, zeroed
    # at the first step and by token_dropout in training, and the parallel logits' softmax)
    head_size: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        """The fields, less those added after models were shipped while they keep the value that
        means "as before": such a config is written (and fingerprinted, for the fit caches) as it was."""
        return {k: v for k, v in asdict(self).items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


# fields added after models were shipped -> the value that means "as before"
LATER_FIELDS = {"bar_carry": False, "token_dropout": 0.0, "decoder": "lstm", "head_size": 0}


# what a run may change when it continues another run's weights (``train --from``): no weight's shape
# depends on these
WEIGHT_FREE = ("free_bits", "beta", "dropout", "bar_carry", "token_dropout")


def same_weights(a: VAEConfig, b: VAEConfig) -> bool:
    """Whether models of configs ``a`` and ``b`` have the same weights (names and shapes)."""
    return replace(a, **{k: getattr(b, k) for k in WEIGHT_FREE}) == b


# weights a new run may add to another model's when it starts from them (``train --init``): each
# starts so that the grown model computes what the other did (the head's output layer is zero)
ADDED_WEIGHTS = {"head_size": ("head_embedding.", "head.", "head_out.")}
GROWTH = f"may change only {', '.join(WEIGHT_FREE)} and add {', '.join(ADDED_WEIGHTS)}"  # what grows_from allows


def grows_from(base: VAEConfig, new: VAEConfig) -> bool:
    """Whether a model of config ``new`` holds every weight of one of ``base`` with its shape, and
    adds none but ``ADDED_WEIGHTS`` where ``base`` had none of them (the parallel decoder's head)."""
    added = {k: getattr(new, k) for k in ADDED_WEIGHTS if getattr(base, k) == LATER_FIELDS[k]}
    return same_weights(replace(base, **added), new)


PRESETS: dict[str, VAEConfig] = {
    # MusicVAE hierdec-mel_16bar: encoder 2 x 2048 bidirectional, conductor 2 x 1024, decoder 2 x 1024, z 512.
    "paper": VAEConfig(z_size=512, encoder_size=2048, encoder_layers=2, conductor_size=1024, decoder_size=1024),
    # Chosen for 2 CPU cores: benchmarks/model_speed.py measures its speed (try --config for wider
    # LSTMs), benchmarks/capacity_table.py what wider LSTMs, the hierarchical encoder or bar_carry
    # give at equal CPU time (docs/figures.md).
    "default": VAEConfig(),
    # Non-autoregressive: reconstructs far sooner on CPUs (benchmarks/capacity_table.py "parallel decoder").
    "parallel": VAEConfig(
        z_size=512,
        encoder="patches",
        encoder_size=512,
        encoder_layers=2,
        conductor_size=512,
        decoder="parallel",
        decoder_size=1024,
        free_bits=1024.0,
    ),
    # For tests and quick experiments.
    "tiny": VAEConfig(z_size=16, encoder_size=32, conductor_size=32, decoder_size=32, free_bits=8.0),
}


class MelodyVAE(nn.Module):
    """What every melody VAE offers: encode (tokens -> mu, sigma), decode_logits (teacher-forced),
    decode (free-running, optionally under a :class:`Steer`), forward (training) and sample."""

    config: VAEConfig

    def forward(self, tokens: torch.Tensor, eps: torch.Tensor | None = None, sample: bool = True):
        """Returns (logits (B, 256, V), mu, sigma). ``eps`` is the reparameterisation noise (B, Z)
        (drawn here when not given); ``sample=False`` decodes from the posterior mean."""
        mu, sigma = self.encode(tokens)
        if not sample:
            z = mu
        else:
            z = mu + sigma * (torch.randn_like(sigma) if eps is None else eps.to(sigma.dtype))
        return self.decode_logits(z, tokens), mu, sigma

    @torch.inference_mode()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        batch_size: int = 256,
        bf16: bool = False,
        move=None,
    ) -> torch.Tensor:
        """n melodies from the prior, decoded ``batch_size`` at a time: tokens (n, 256), unsteered.
        ``move`` (z -> z', e.g. the realism actor) moves each batch of prior latents first."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.z_size, generator=generator, device=device)
        move = move or (lambda z: z)
        return torch.cat(
            [self.decode(move(z[i : i + batch_size]), temperature, generator, bf16) for i in range(0, n, batch_size)]
        )


def build_model(config: VAEConfig) -> MelodyVAE:
    """The model ``config`` describes (by its ``decoder``)."""
    if config.decoder == "parallel":
        return ParallelMelodyVAE(config)
    if config.decoder != "lstm":
        raise ValueError(f"decoder must be 'lstm' or 'parallel', not {config.decoder!r}")
    return HierarchicalMelodyVAE(config)


class HierarchicalMelodyVAE(MelodyVAE):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.encoder not in ("flat", "hierarchical"):
            raise ValueError(f"encoder must be 'flat' or 'hierarchical', not {c.encoder!r}")
        if c.encoder == "hierarchical":
            self.bar_encoder = nn.LSTM(NUM_CLASSES, c.encoder_size, 1, batch_first=True, bidirectional=True)
            self.encoder = nn.LSTM(
                2 * c.encoder_size, c.encoder_size, c.encoder_layers, batch_first=True, bidirectional=True
            )
        else:
            self.encoder = nn.LSTM(NUM_CLASSES, c.encoder_size, c.encoder_layers, batch_first=True, bidirectional=True)
        self.to_posterior = nn.Linear(4 * c.encoder_size * c.encoder_layers, 2 * c.z_size)
        self.z_to_conductor = nn.Linear(c.z_size, 2 * c.conductor_layers * c.conductor_size)
        self.conductor = nn.LSTM(
            1,
            c.conductor_size,
            c.conductor_layers,
            batch_first=True,
            dropout=c.dropout if c.conductor_layers > 1 else 0.0,
        )
        self.bar_to_decoder = nn.Linear(c.conductor_size, 2 * c.decoder_layers * c.decoder_size)
        self.decoder = nn.LSTM(
            NUM_CLASSES + c.conductor_size,
            c.decoder_size,
            c.decoder_layers,
            batch_first=True,
            dropout=c.dropout if c.decoder_layers > 1 else 0.0,
        )
        self.output = nn.Linear(c.decoder_size, NUM_CLASSES)

    # -- encoder ---------------------------------------------------------------------------------
    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, 256) long -> (mu, sigma), each (B, Z)."""
        B = tokens.shape[0]
        x = F.one_hot(tokens.long(), NUM_CLASSES).to(self.output.weight.dtype)  # (B, 256, V)
        if self.config.encoder == "hierarchical":
            _, (hb, _) = self.bar_encoder(x.view(B * NUM_BARS, BAR_STEPS, NUM_CLASSES))  # (2, B*16, H)
            x = hb.transpose(0, 1).reshape(B, NUM_BARS, -1)  # (B, 16, 2H): one summary per bar
        _, (h, c) = self.encoder(x)  # h, c: (layers * 2, B, H)
        state = torch.cat([h, c], 0).transpose(0, 1).reshape(tokens.shape[0], -1)  # (B, 4 * layers * H)
        mu, raw = self.to_posterior(state).chunk(2, dim=-1)
        return mu, F.softplus(raw) + 1e-5

    # -- decoder ---------------------------------------------------------------------------------
    def _initial_state(self, linear: nn.Linear, x: torch.Tensor, layers: int, size: int):
        s = torch.tanh(linear(x)).view(x.shape[0], 2, layers, size)  # (N, h|c, layers, size)
        return s[:, 0].transpose(0, 1).contiguous(), s[:, 1].transpose(0, 1).contiguous()

    def bar_embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Z) -> the conductor's 16 bar embeddings (B, 16, C)."""
        c = self.config
        state = self._initial_state(self.z_to_conductor, z, c.conductor_layers, c.conductor_size)
        out, _ = self.conductor(z.new_zeros(z.shape[0], NUM_BARS, 1), state)
        return out

    def decoder_state(self, bars: torch.Tensor):
        """bar embeddings (B, 16, C) -> initial (h, c) of the bar LSTM for B*16 rows."""
        c = self.config
        flat = bars.reshape(-1, bars.shape[-1])
        return self._initial_state(self.bar_to_decoder, flat, c.decoder_layers, c.decoder_size)

    def decode_logits(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, 256, V) of ``tokens`` given z: all bars in one batch."""
        B = z.shape[0]
        bars = self.bar_embeddings(z)  # (B, 16, C)
        state = self.decoder_state(bars)
        target = tokens.long().reshape(B * NUM_BARS, BAR_STEPS)
        if self.config.bar_carry:  # the previous step's token throughout, across bar lines too
            flat = F.one_hot(tokens.long()[:, :-1], NUM_CLASSES).to(bars.dtype)
            prev = torch.cat([flat.new_zeros(B, 1, NUM_CLASSES), flat], 1).view(B * NUM_BARS, BAR_STEPS, -1)
        else:
            prev = F.one_hot(target[:, :-1], NUM_CLASSES).to(bars.dtype)
            prev = torch.cat([prev.new_zeros(B * NUM_BARS, 1, NUM_CLASSES), prev], 1)  # zeros start each bar
        if self.training and self.config.token_dropout > 0:
            keep = torch.rand(prev.shape[:2], device=prev.device) >= self.config.token_dropout
            prev = prev * keep.unsqueeze(-1).to(prev.dtype)
        emb = bars.reshape(B * NUM_BARS, 1, -1).expand(-1, BAR_STEPS, -1)
        out, _ = self.decoder(torch.cat([prev, emb], -1), state)
        return self.output(out).view(B, STEPS, NUM_CLASSES)

    # -- sampling --------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(
        self,
        z: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        bf16: bool = False,
        steer: Steer | None = None,
    ) -> torch.Tensor:
        """Free-running decode: z (B, Z) -> tokens (B, 256) long. ``temperature`` 0 means argmax;
        ``bf16`` runs the matmuls in bfloat16 (about twice as fast on CPUs with AVX-512 BF16 or AMX).

        A fused step loop: the bar embedding's share of the first layer's gates is computed once,
        the previous token's share is a column lookup, so each step costs one matmul per layer plus
        the output projection. Unsteered, all B*16 bars run at once (16 steps; on a CPU in blocks
        of PARALLEL_ROWS rows); with ``steer`` (the rules' decode-time constraints,
        :mod:`melody_lc.melody.steer`) too, where every constraint depends only on the step and its
        own bar (``Steer.start_bars``); else each row is a whole melody and its bars run in sequence
        (256 steps over B rows), so that a constraint sees across bar lines.
        """
        B = z.shape[0]
        # bf16: the one-off parts under autocast; the step loop's weights are cast once here, not
        # at every step as autocast would (the same arithmetic: bf16 matmuls, fp32 where autocast has it)
        with torch.autocast(z.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            bars = self.bar_embeddings(z)
            if steer is not None and steer.bar_source is not None:  # bars that repeat others share their embedding
                bars = bars[:, steer.bar_source]
            h0, c0 = self.decoder_state(bars)  # (layers, B*16, H)
            w_ih0 = self.decoder.weight_ih_l0  # (4H, V + C)
            emb_gates = (
                bars.reshape(B * NUM_BARS, -1) @ w_ih0[:, NUM_CLASSES:].T
                + self.decoder.bias_ih_l0
                + self.decoder.bias_hh_l0
            )
        token_gates = w_ih0[:, :NUM_CLASSES].T.contiguous()  # (V, 4H): one-hot input -> a row lookup
        cast = (lambda w: w.to(torch.bfloat16)) if bf16 else (lambda w: w)
        layers = [
            (
                cast(getattr(self.decoder, f"weight_ih_l{k}")),
                cast(getattr(self.decoder, f"weight_hh_l{k}")),
                cast(getattr(self.decoder, f"bias_ih_l{k}") + getattr(self.decoder, f"bias_hh_l{k}")),
            )
            for k in range(self.config.decoder_layers)
        ]
        output = (cast(self.output.weight), cast(self.output.bias))
        steered = bool(steer)
        if self.config.bar_carry or (steered and not steer.start_bars(B, z.device)):
            return self._decode_in_sequence(
                h0, c0, emb_gates, token_gates, layers, output, temperature, generator, steer
            )
        rows = B * NUM_BARS
        out = torch.empty(rows, BAR_STEPS, dtype=torch.long, device=z.device)
        # every step's uniforms drawn at once: from a CPU generator the same numbers as one draw per
        # step over all rows, so the melodies do not depend on how the rows are split below
        u = uniforms((BAR_STEPS, rows, 1), generator, z.device) if temperature > 0 and not steered else None
        block = PARALLEL_ROWS if z.device.type == "cpu" else rows  # blocks for a CPU's caches (whole melodies)
        for a in range(0, rows, block):
            b = min(a + block, rows)
            hs, cs = list(h0[:, a:b].unbind(0)), list(c0[:, a:b].unbind(0))
            gates_in = emb_gates[a:b]
            for t in range(BAR_STEPS):
                logits = self._step(gates_in, hs, cs, layers, output)
                if steered:
                    tok = steer.choose_bars(logits, t, slice(a, b), temperature, generator)
                else:
                    tok = _draw(logits, temperature, generator, None if u is None else u[t, a:b])
                out[a:b, t] = tok
                gates_in = emb_gates[a:b] + token_gates[tok]
        if steered:
            steer.finish_bars()
        return out.view(B, STEPS)

    @staticmethod
    def _step(gates_in: torch.Tensor, hs: list, cs: list, layers: list, output: tuple) -> torch.Tensor:
        """One step of the bar LSTM (states updated in place in ``hs``, ``cs``) -> logits (rows, V).
        Matmuls run in the weights' dtype (bf16 or fp32), their inputs cast to it."""
        x = None
        for k, (w_ih, w_hh, b) in enumerate(layers):
            dt = w_hh.dtype
            base = gates_in if k == 0 else torch.addmm(b, x.to(dt), w_ih.T)
            h = hs[k].to(dt)
            # fp32: the recurrent product added in the matmul; bf16 weights (the first layer's gates
            # are fp32 there) keep the separate product and sum, rounded as they always were, and so
            # does fp32 under autocast, which would round the fp32 gates to bf16 inside addmm
            fused = base.dtype == dt == torch.float32 and not torch.is_autocast_enabled(base.device.type)
            g = torch.addmm(base, h, w_hh.T) if fused else base + h @ w_hh.T
            i, f, gg, o = g.chunk(4, dim=-1)
            cs[k] = torch.sigmoid(f) * cs[k] + torch.sigmoid(i) * torch.tanh(gg)
            hs[k] = torch.sigmoid(o) * torch.tanh(cs[k])
            x = hs[k]
        return F.linear(x.to(output[0].dtype), *output)

    def _decode_in_sequence(
        self, h0, c0, emb_gates, token_gates, layers, output, temperature, generator, steer: Steer | None
    ):
        layer_count, rows, size = h0.shape
        B = rows // NUM_BARS
        h0, c0 = h0.view(layer_count, B, NUM_BARS, size), c0.view(layer_count, B, NUM_BARS, size)
        emb_gates = emb_gates.view(B, NUM_BARS, -1)
        state = steer.start(B, emb_gates.device) if steer else None
        out = torch.empty(B, STEPS, dtype=torch.long, device=emb_gates.device)
        tok = None
        for bar in range(NUM_BARS):  # each bar restarts from its embedding, as in training
            hs, cs = list(h0[:, :, bar].unbind(0)), list(c0[:, :, bar].unbind(0))
            carried = self.config.bar_carry and tok is not None  # the previous bar's last token
            bar_gates = emb_gates[:, bar]
            gates_in = bar_gates + token_gates[tok] if carried else bar_gates
            for t in range(BAR_STEPS):
                logits = self._step(gates_in, hs, cs, layers, output)
                tok = (
                    steer.choose(logits, state, temperature, generator)
                    if steer
                    else _draw(logits, temperature, generator)
                )
                out[:, bar * BAR_STEPS + t] = tok
                gates_in = bar_gates + token_gates[tok]
        return out


PATCH_EMBEDDING = 32  # the parallel model's embedding of a step's class


def _convolutions(width: int, count: int) -> nn.Sequential:
    """``count`` convolutions over the 16 bars (kernel 3: a bar sees its neighbours), each then GELU."""
    return nn.Sequential(*[m for _ in range(count) for m in (nn.Conv1d(width, width, 3, padding=1), nn.GELU())])


class ParallelMelodyVAE(MelodyVAE):
    """The non-autoregressive melody VAE (see the module's docstring): z alone decides every step."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.encoder != "patches":
            raise ValueError(f"the parallel decoder takes encoder 'patches', not {c.encoder!r}")
        if c.bar_carry or (c.token_dropout and not c.head_size):  # nothing fed back: they would do nothing
            raise ValueError(
                "bar_carry and token_dropout are settings of the LSTM decoder (token_dropout also of the "
                "parallel decoder's head, head_size > 0), not of the parallel one"
            )
        E, C = c.encoder_size, c.conductor_size
        self.embedding = nn.Embedding(NUM_CLASSES, PATCH_EMBEDDING)
        self.bar_in = nn.Sequential(nn.Linear(BAR_STEPS * PATCH_EMBEDDING, 2 * E), nn.GELU(), nn.Linear(2 * E, E))
        self.encoder = _convolutions(E, c.encoder_layers)
        self.to_posterior = nn.Linear(NUM_BARS * E, 2 * c.z_size)
        self.z_to_bars = nn.Linear(c.z_size, NUM_BARS * C)
        self.conductor = nn.Sequential(nn.GELU(), *_convolutions(C, c.conductor_layers))
        self.bar_out = nn.Sequential(
            nn.Linear(C, c.decoder_size), nn.GELU(), nn.Linear(c.decoder_size, BAR_STEPS * NUM_CLASSES)
        )
        if c.head_size:
            self.head_embedding = nn.Embedding(NUM_CLASSES, PATCH_EMBEDDING)
            self.head = nn.LSTM(PATCH_EMBEDDING + NUM_CLASSES, c.head_size, batch_first=True)
            self.head_out = nn.Linear(c.head_size, NUM_CLASSES)
            nn.init.zeros_(self.head_out.weight)  # it starts as the parallel model
            nn.init.zeros_(self.head_out.bias)

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, 256) long -> (mu, sigma), each (B, Z)."""
        B = tokens.shape[0]
        bars = self.bar_in(self.embedding(tokens.long()).view(B, NUM_BARS, BAR_STEPS * PATCH_EMBEDDING))  # (B, 16, E)
        h = self.encoder(bars.transpose(1, 2)).flatten(1)  # (B, E * 16)
        mu, raw = self.to_posterior(h).chunk(2, dim=-1)
        return mu, F.softplus(raw) + 1e-5

    def bar_embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Z) -> the 16 bar embeddings (B, 16, C)."""
        bars = self.z_to_bars(z).view(z.shape[0], self.config.conductor_size, NUM_BARS)
        return self.conductor(bars).transpose(1, 2)

    def bar_logits(self, bars: torch.Tensor) -> torch.Tensor:
        """bar embeddings (B, 16, C) -> logits of every step (B, 256, V)."""
        return self.bar_out(bars).view(bars.shape[0], STEPS, NUM_CLASSES)

    def decode_logits(self, z: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The logits (B, 256, V) given z (and, with the head, teacher-forced on ``tokens``; without
        it ``tokens`` is not read: nothing is fed back)."""
        logits = self.bar_logits(self.bar_embeddings(z))
        if not self.config.head_size:
            return logits
        prev = self.head_embedding(tokens.long()[:, :-1])
        prev = torch.cat([prev.new_zeros(prev.shape[0], 1, prev.shape[-1]), prev], 1)  # zeros at the first step
        if self.training and self.config.token_dropout > 0:
            keep = torch.rand(prev.shape[:2], device=prev.device) >= self.config.token_dropout
            prev = prev * keep.unsqueeze(-1).to(prev.dtype)
        out, _ = self.head(torch.cat([prev, torch.softmax(logits, -1).to(prev.dtype)], -1))
        return logits + self.head_out(out)

    @torch.inference_mode()
    def decode(
        self,
        z: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        bf16: bool = False,
        steer: Steer | None = None,
    ) -> torch.Tensor:
        """Free-running decode: z (B, Z) -> tokens (B, 256) long, as :meth:`HierarchicalMelodyVAE.decode`.
        Unsteered, every step is drawn at once; with ``steer`` the steps are drawn in order."""
        with torch.autocast(z.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            bars = self.bar_embeddings(z)
            if steer is not None and steer.bar_source is not None:  # bars that repeat others share their embedding
                bars = bars[:, steer.bar_source]
            logits = self.bar_logits(bars).float()  # (B, 256, V)
        if not steer and not self.config.head_size:
            return _draw(logits.view(-1, NUM_CLASSES), temperature, generator).view(z.shape[0], STEPS)
        state = steer.start(z.shape[0], z.device) if steer else None
        out = torch.empty(z.shape[0], STEPS, dtype=torch.long, device=z.device)
        head = _HeadSteps(self, logits) if self.config.head_size else None
        tok = None
        for t in range(STEPS):
            step = logits[:, t] if head is None else head.logits(t, tok)
            tok = steer.choose(step, state, temperature, generator) if steer else _draw(step, temperature, generator)
            out[:, t] = tok
        return out


class _HeadSteps:
    """The parallel decoder's head, one step at a time (a free-running decode): the beliefs' share
    of the gates is computed once for all steps, the previous token's share is a row lookup."""

    def __init__(self, model: ParallelMelodyVAE, logits: torch.Tensor) -> None:
        lstm = model.head
        w_ih = lstm.weight_ih_l0
        self.logits_in, self.out = logits, model.head_out
        self.w_hh = lstm.weight_hh_l0
        self.beliefs = torch.softmax(logits, -1) @ w_ih[:, PATCH_EMBEDDING:].T + lstm.bias_ih_l0 + lstm.bias_hh_l0
        self.token_gates = model.head_embedding.weight @ w_ih[:, :PATCH_EMBEDDING].T  # (V, 4H)
        self.h = self.c = logits.new_zeros(logits.shape[0], model.config.head_size)

    def logits(self, t: int, prev: torch.Tensor | None) -> torch.Tensor:
        """Step t's logits (B, V), given the tokens (B,) drawn at step t - 1 (None at the first)."""
        g = self.beliefs[:, t] + self.h @ self.w_hh.T
        if prev is not None:
            g = g + self.token_gates[prev]
        i, f, gg, o = g.chunk(4, dim=-1)
        self.c = torch.sigmoid(f) * self.c + torch.sigmoid(i) * torch.tanh(gg)
        self.h = torch.sigmoid(o) * torch.tanh(self.c)
        return self.logits_in[:, t] + self.out(self.h)


def _draw(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None, u: torch.Tensor | None = None
) -> torch.Tensor:
    """The class (rows,) of a step: the argmax at temperature 0, else drawn at ``temperature`` (at
    the uniforms ``u`` (rows, 1) where given)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return draw(torch.softmax(logits.float() / temperature, -1), generator, u)


def kl_nats(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) in nats, the mean over the batch's melodies."""
    return (0.5 * (mu.float() ** 2 + sigma.float() ** 2 - 1.0) - torch.log(sigma.float())).sum(-1).mean()


def vae_loss(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    config: VAEConfig,
    kl_reference: torch.Tensor | None = None,
) -> dict:
    """The training loss and its named terms (all tensors; per-melody means over the batch).

    recon    cross-entropy of the tokens, nats per melody
    kl_bits  KL(q(z|x) || N(0, I)), bits per melody
    beta     weight of the KL beyond the free bits
    kl_term  beta * max(KL - free_bits, 0), nats per melody
    loss     recon + kl_term   (in nats)
    accuracy teacher-forced token accuracy

    ``kl_reference`` (nats) decides whether the KL is beyond the free bits; by default this batch's
    own KL. Under DDP it is the mean over all processes' shards, so that the averaged gradient is
    exactly one process's gradient on the whole batch even when the shards fall on both sides.
    """
    recon = (
        F.cross_entropy(logits.float().reshape(-1, NUM_CLASSES), tokens.reshape(-1).long(), reduction="sum")
        / tokens.shape[0]
    )
    kl = kl_nats(mu, sigma)
    free_nats = config.free_bits * LOG2
    beyond = (kl.detach() if kl_reference is None else kl_reference) > free_nats
    kl_term = config.beta * (kl - free_nats) * beyond
    loss = recon + kl_term
    with torch.no_grad():
        accuracy = (logits.argmax(-1) == tokens.long()).float().mean()
    return {
        "loss": loss,
        "recon": recon.detach(),
        "kl_bits": (kl / LOG2).detach(),
        "beta": torch.tensor(config.beta),
        "kl_term": kl_term.detach(),
        "accuracy": accuracy,
    }
