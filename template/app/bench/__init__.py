"""Benchmark of the service's own plumbing: `python -m app.bench` (never mounted in production)."""
