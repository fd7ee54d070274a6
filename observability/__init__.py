"""Operating the service: log configuration and the Prometheus metrics registry.

The cache library (``middleware/``) knows nothing of this package; ``app.py`` wires the two.
"""
