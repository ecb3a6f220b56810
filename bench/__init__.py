"""Benchmarks of fastbp (see bench/README.md)."""
