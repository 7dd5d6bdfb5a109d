"""Benchmarks (`make bench`): bounded in time, loopback only, figures printed at the end."""
