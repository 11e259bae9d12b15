"""Benchmarks of the portal against the GitHub emulator, beside the seed's code as a baseline.

``make bench`` (``python -m bench``) starts ``fakegithub`` in-process with a per-call latency,
the portal under gunicorn on loopback, runs every scenario in ``bench.scenarios`` and prints
one table (also written as JSON under ``bench/results/``). Everything stays on 127.0.0.1 and
every load is bounded in count and time.
"""
