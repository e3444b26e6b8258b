"""Tests of the embeddings feature."""
