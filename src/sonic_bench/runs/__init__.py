"""Whole runs as library calls: a sweep, a baseline. Each resolves its target, measures,
and writes one run folder; the CLI only parses arguments, calls these and prints."""
