"""Talking to Triton: the embedded server, clients, and the statistics API."""
