"""Benchmarks (never run in CI). Each prints the command, machine and results as JSON."""
