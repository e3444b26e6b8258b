"""Benchmarks of the service, run from the project root: `python -m bench` (not in the image)."""
