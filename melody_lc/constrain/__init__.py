"""Where melody, rules and engine meet: fit a rules file to a VAE, generate, transform.

    fitted = fit_rules(rules, model)                        # zero-shot; cached by (rules, model, config)
    tokens, report = generate(rules, model, n=16, fitted=fitted, method="actor")
    new, report = transform(melody_tokens, rules, model, fitted=fitted)

The CLI, the terminal UI and the live engine all call these; none re-implements them.
"""

from melody_lc.constrain.enforce import (
    DECODE_BATCH,
    FIT_TEMPERATURE,
    METHODS,
    REDRAW_BUDGET,
    TRANSFORM_REDRAWS,
    Checked,
    Infeasible,
    changed_notes,
    check_feasible,
    conditions,
    decode_checked,
    generate,
    report_conditions,
    transform,
)
from melody_lc.constrain.fitting import (
    FIT_KIND,
    FIT_SCORING,
    FIT_STATS,
    MASK_SCALE,
    RELABELS,
    Fitted,
    cached_fit,
    config_for,
    fit_key,
    fit_rounds,
    fit_rules,
    fit_scores,
    load_fit_stats,
    load_fitted,
    model_fingerprint,
    posterior_stats,
    save_fit_stats,
    save_fitted,
    shipped_fits_dir,
)

__all__ = [
    "DECODE_BATCH",
    "FIT_KIND",
    "FIT_SCORING",
    "FIT_STATS",
    "FIT_TEMPERATURE",
    "MASK_SCALE",
    "METHODS",
    "REDRAW_BUDGET",
    "RELABELS",
    "TRANSFORM_REDRAWS",
    "Checked",
    "Fitted",
    "Infeasible",
    "cached_fit",
    "changed_notes",
    "check_feasible",
    "conditions",
    "config_for",
    "decode_checked",
    "fit_key",
    "fit_rounds",
    "fit_rules",
    "fit_scores",
    "generate",
    "load_fit_stats",
    "load_fitted",
    "model_fingerprint",
    "posterior_stats",
    "report_conditions",
    "save_fit_stats",
    "save_fitted",
    "shipped_fits_dir",
    "transform",
]
