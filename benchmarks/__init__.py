"""Benchmarks (repository-level, not installed): ``python -m benchmarks.<name>``."""
