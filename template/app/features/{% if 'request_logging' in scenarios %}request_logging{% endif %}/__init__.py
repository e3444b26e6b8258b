"""Request records and AI-agent conversation records persisted off the request path, with log analysis."""
