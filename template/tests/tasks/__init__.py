"""Tests of `app/tasks`."""
