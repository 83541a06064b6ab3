"""Batch and interactive prediction from a model artifact: ``Predictor`` (sliding window,
TTA, results on the scan's own grid), per-label statistics, previews, DICOM SEG, and the
batch runner behind ``medssl predict``."""

from medssl.inference.predictor import Prediction, Predictor, Prepared

__all__ = ["Prediction", "Predictor", "Prepared"]
