"""NVIDIA's perf_analyzer beside the native engine: installed from PyPI wheels, run on the
same levels with the same patches, and its CSV format read and written, so that every
sonic-bench result can be cross-checked against the tool the field trusts."""
