"""Tests of the request-logging scenario."""
