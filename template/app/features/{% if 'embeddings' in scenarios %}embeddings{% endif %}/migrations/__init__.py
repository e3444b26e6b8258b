"""The embeddings scenario's schema revisions: the Alembic branch labelled `embeddings`."""
