"""Benchmarks of the service, kept out of the runtime package."""
