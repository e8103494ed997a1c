"""What ``GET /metrics`` exports, and the plain figures it is made of.

The parts that do the work keep plain integers and ``Histogram``s (no
Prometheus call on a per-message or per-client path); ``collector`` reads them
only when Prometheus scrapes.
"""
