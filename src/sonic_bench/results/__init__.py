"""Run folders (schema v1): the records, and writing and reading them."""
