"""The rules language: composers' constraints in a text file, compiled to rewards over melodies.

See :mod:`melody_lc.rules.syntax` for the format, :mod:`melody_lc.rules.kinds` for the constraint
kinds and the plugin API (:mod:`melody_lc.rules.form` for chords, climax and form),
:mod:`melody_lc.rules.ruleset` for scoring and :mod:`melody_lc.rules.checks` for static checks.
"""

from melody_lc.rules.base import PLUGIN_API_VERSION, RuleKind
from melody_lc.rules.kinds import PLUGIN_GROUP
from melody_lc.rules.ruleset import OpenValuesError, Rule, RuleSet, load_rules, parse_rules
from melody_lc.rules.syntax import Cursor, RulesError

__all__ = [
    "PLUGIN_API_VERSION",
    "PLUGIN_GROUP",
    "Cursor",
    "OpenValuesError",
    "Rule",
    "RuleKind",
    "RuleSet",
    "RulesError",
    "load_rules",
    "parse_rules",
]
