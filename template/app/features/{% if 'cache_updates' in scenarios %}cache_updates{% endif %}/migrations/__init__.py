"""The cache_updates scenario's schema revisions: the Alembic branch labelled `cache_updates`."""
