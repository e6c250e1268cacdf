"""ProtoDUNE-SP-like events -> hits -> 48x48 patches -> request batches."""
