"""Evaluation as pure functions: predictions, targets and training counts in, a dict out."""

from .posthoc import posthoc_adjusted_logits, select_tau, tau_grid, tau_norm_logits
from .shot_accuracy import shot_accuracy, shot_groups

__all__ = ["shot_accuracy", "shot_groups", "posthoc_adjusted_logits", "select_tau", "tau_grid", "tau_norm_logits"]
