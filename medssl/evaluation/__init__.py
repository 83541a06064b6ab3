"""Metrics, evaluation of model artifacts, and label-efficiency reports."""
