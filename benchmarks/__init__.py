"""The benchmark scripts and the harness they share; run them from the repository root as modules, e.g.
``python -m benchmarks.bench_explain --quick`` (see each script's docstring)."""
