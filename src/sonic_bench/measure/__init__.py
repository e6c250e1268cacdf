"""Measurement: timing windows, statistics, the in-process baseline and the sweeps."""
