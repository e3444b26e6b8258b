"""Embeddings: document upload, background parsing, chunking and embedding, vector search."""
