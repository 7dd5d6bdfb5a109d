"""The REST API, its transactional outbox and (later) the run recorder."""
