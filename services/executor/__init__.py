"""The executor: consumes ``run.due``, calls webhooks (signed per Standard Webhooks), publishes outcomes."""
