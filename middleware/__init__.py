"""A pluggable response cache for Sanic (filled in by the cache work)."""
