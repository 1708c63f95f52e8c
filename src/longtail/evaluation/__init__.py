"""Evaluation as pure functions: predictions, targets and training counts in, a dict out."""

from .posthoc import correct_linear_head, posthoc_adjusted_logits, select_tau, tau_grid, tau_grid_edge_note, tau_norm_logits
from .prediction_metrics import (
                                 calibration_bins,
                                 calibration_by_group,
                                 confusion_matrix,
                                 expected_calibration_error,
                                 precision_recall,
                                 score_logits,
                                 topk_accuracy,
                                 write_prediction_reports,
)
from .shot_accuracy import shot_accuracy, shot_groups

__all__ = ["shot_accuracy", "shot_groups", "score_logits", "topk_accuracy", "expected_calibration_error",
           "calibration_bins", "calibration_by_group", "confusion_matrix", "precision_recall", "write_prediction_reports",
           "correct_linear_head", "posthoc_adjusted_logits", "select_tau", "tau_grid", "tau_grid_edge_note", "tau_norm_logits"]
