"""Tests of `app/core`."""
