"""Tests of `app/features/cache_updates`."""
