"""How the service's worker processes run their event loop (outside the cache and the API)."""
