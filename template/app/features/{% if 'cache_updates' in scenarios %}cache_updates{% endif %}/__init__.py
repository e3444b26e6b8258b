"""Cache updates: cache-aside item reads, background refresh after writes, a single-flight aggregate."""
