"""Outgoing webhooks: signed (Standard Webhooks), retried, SSRF-safe deliveries of events."""
