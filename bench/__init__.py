"""Benchmarks run by ``make bench`` (``bench/run.py``) against real PostgreSQL, Redis and workers.

``bench.common`` sets up what every benchmark needs (a throwaway database, a Redis DB number of its
own, an ini shaped like production.ini, worker processes, the API in-process); each other module is one
benchmark with a ``run(environment) -> Result`` function, listed in ``bench.run.BENCHMARKS``.
"""
