"""The Postgres schema (one for the API, the recorder and the DLQ service) and the engine factory."""
