"""Benchmarks (``ephw bench ...``): speed measured as ratios within one run."""
