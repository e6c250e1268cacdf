"""Server-side metrics: Triton's Prometheus endpoint, through Prometheus or directly."""
