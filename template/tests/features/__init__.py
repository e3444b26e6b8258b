"""Tests of `app/features`, one package per scenario."""
