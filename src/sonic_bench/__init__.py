"""sonic-bench: benchmark inference-as-a-service the way the SONIC ProtoDUNE-SP study did."""

__version__ = "0.1.0"
