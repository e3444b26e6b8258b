"""Tests of `app/jobs`."""
