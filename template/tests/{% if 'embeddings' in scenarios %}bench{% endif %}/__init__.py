"""Tests of the benchmarks: they still run (on small inputs: not tests of speed)."""
