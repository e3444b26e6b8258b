"""Durable job records: one row per piece of background work, readable at `GET /jobs/{id}`."""
