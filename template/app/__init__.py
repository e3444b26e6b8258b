"""The service package: composition root in `main`, shared plumbing in `core`, `jobs`, `tasks`."""
