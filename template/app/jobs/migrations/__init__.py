"""The core's schema revisions (the `jobs` table): the Alembic branch labelled `core`."""
