"""Benchmarks and the tables of the documentation, as a package: run each from the repository
root as ``python -m benchmarks.NAME`` (``bounds`` and ``bench_mmr`` share ``bench_hzono``'s
measurements, ``soundness_table`` drives the soundness fuzzer ``tests.soundness``); the scripts
that import nothing of their siblings also run as ``python benchmarks/NAME.py``."""
