"""Benchmarks that print JSON. Speed targets live here, not in timed tests."""
