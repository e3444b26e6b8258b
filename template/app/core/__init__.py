"""Cross-cutting plumbing shared by every feature: settings, database, logging, metrics."""
