"""Benchmarks of the service against the limit (bare Sanic) and the peer (FastAPI + fastapi-cache2).

Standalone scripts, outside pytest collection: ``python -m bench.run`` runs everything and writes
``bench/results/latest.md`` and ``latest.png``; ``python -m bench.latency_check BASE_URL`` checks
a deployed service.  See ``README.md`` ("Benchmarks").
"""
