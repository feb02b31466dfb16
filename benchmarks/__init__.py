"""Benchmarks that prove sandman's speed claims; run them with `python -m benchmarks.shim`."""
