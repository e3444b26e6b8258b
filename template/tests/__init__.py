"""Tests of the service; the layout mirrors `app/`."""
