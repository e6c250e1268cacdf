"""Turning run folders into decisions: throughput, saturation, the latency model."""
