"""Evaluation as pure functions: predictions, targets and training counts in, a dict out."""

from .shot_accuracy import shot_accuracy, shot_groups

__all__ = ["shot_accuracy", "shot_groups"]
