"""The local stack: a real Kafka broker and a real Postgres under .chime/, for `make run` and `make test`."""
