"""Benchmarks of the budgets in DESIGN.md; results are recorded in docs/benchmarks.md."""
