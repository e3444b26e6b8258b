"""Tests against real services: a uvicorn process, PostgreSQL and, for Celery, Redis and a worker."""
