"""One package per scenario chosen at render time; each is self-contained (router, schemas, service, tasks, config)."""
