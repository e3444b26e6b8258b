"""Tests of your own endpoints (app/api/)."""
