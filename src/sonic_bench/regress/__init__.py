"""Regression checks for CI: thresholds, samples, and statistical verdicts."""
