"""The dead-letter service: keeps dead runs in Postgres and performs the replays the API asks for."""
