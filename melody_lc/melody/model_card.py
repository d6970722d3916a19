"""The model card of a shipped melody VAE: data, preset, training, and the figures of `melody-lc evaluate`."""

from __future__ import annotations

import json

TARGETS = {  # the quality targets the project set itself (the shipped default model; the VAE that remembers)
    "teacher_forced_accuracy": 0.90,
    "free_running_accuracy": 0.85,
    "free_running_note_accuracy": 0.70,
    "feature_overlap_realism.mean": 0.75,
}


def _get(figures: dict, dotted: str):
    v = figures
    for part in dotted.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "?"


DESCRIPTIONS = {  # decoder -> what the model is
    "lstm": "A hierarchical LSTM melody VAE (the model of Engel, Hoffman & Roberts 2018; MusicVAE's hierarchical decoder)",
    "parallel": "A non-autoregressive melody VAE (bar patches and convolutions over the bars; z alone writes every step)",
    "parallel+head": "A melody VAE that writes every step from z at once (bar patches and convolutions over the bars), "
    "each step then corrected by a small LSTM that reads the steps before it",
}


def model_card(name: str, config: dict, meta: dict, figures: dict) -> str:
    hours = meta.get("train_seconds", 0) / 3600
    data = meta.get("data", {})
    lines = [
        f"# {name}",
        "",
        DESCRIPTIONS.get(config.get("decoder", "lstm") + ("+head" if config.get("head_size") else ""), "A melody VAE"),
        "over 16-bar melodies: 256 sixteenth steps x 130 classes. Trained with `melody-lc train`;",
        "every figure below was measured by `melody-lc evaluate` on held-out tunes (never seen in training).",
        "",
        "## Data",
        f"- source: {data.get('kind', '?')} ({', '.join(data.get('collections', [])) or data.get('dir', '')})",
        f"- training windows: {_n(meta.get('train_windows'))}",
        f"- dataset fingerprint: `{meta.get('data_fingerprint', '?')}`",
        "",
        "## Model and training",
        f"- preset: `{meta.get('preset', '?')}`; config: `{json.dumps(config)}`",
        f"- steps: {_n(meta.get('steps'))} at batch {_n(meta.get('batch_size'))}",
        f"- wall time: {hours:.2f} h on {meta.get('hardware', '?')}",
        "",
        f"## Evaluation ({figures.get('split', '?')} split, {figures.get('windows', '?')} windows)",
        "",
        "| figure | value | target |",
        "|---|---|---|",
    ]
    rows = [
        ("teacher-forced token accuracy", "teacher_forced_accuracy"),
        ("teacher-forced accuracy on note-on steps", "teacher_forced_note_accuracy"),
        ("free-running reconstruction accuracy (argmax from the posterior mean)", "free_running_accuracy"),
        ("free-running accuracy on note-on steps", "free_running_note_accuracy"),
        ("ELBO (nats per melody)", "elbo_nats"),
        ("KL (bits per melody)", "kl_bits"),
        ("feature overlap, prior samples vs held-out: notes per bar", "feature_overlap.notes_per_bar"),
        ("feature overlap: pitch range", "feature_overlap.pitch_range"),
        ("feature overlap: interval histogram", "feature_overlap.intervals"),
        ("feature overlap: share of notes in the best-fitting key", "feature_overlap.in_key_share"),
        ("feature overlap: mean of the four", "feature_overlap.mean"),
        ("feature overlap through the realism actor: notes per bar", "feature_overlap_realism.notes_per_bar"),
        ("feature overlap through the realism actor: pitch range", "feature_overlap_realism.pitch_range"),
        ("feature overlap through the realism actor: interval histogram", "feature_overlap_realism.intervals"),
        ("feature overlap through the realism actor: share in key", "feature_overlap_realism.in_key_share"),
        ("feature overlap through the realism actor: mean of the four", "feature_overlap_realism.mean"),
    ]
    for label, key in rows:
        v = _get(figures, key)
        if v is None and key.startswith("feature_overlap_realism"):
            continue  # evaluated without a realism actor
        target = TARGETS.get(key)
        shown = f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))
        met = "" if target is None else (f">= {target} ({'met' if v is not None and v >= target else 'not yet'})")
        lines.append(f"| {label} | {shown} | {met} |")
    lines += [
        "",
        f"Prior samples: {figures.get('prior_samples', '?')} at temperature {figures.get('temperature', '?')}.",
        f"A hold-only guess would score {figures.get('hold_share', float('nan')):.3f} token accuracy on these windows; "
        "the note-on accuracies are the harder figures.",
    ]
    if config.get("decoder") == "parallel" and not config.get("head_size"):
        lines.append("The parallel decoder reads no earlier token, so teacher-forced and free-running figures are one.")
    if "feature_overlap_realism" in figures:
        lines.append(
            "Through the realism actor: the same prior latents moved toward where real tunes encode "
            "(`realism.safetensors`, what `melody-lc sample` decodes by default)."
        )
    lines.append("")
    return "\n".join(lines)
