"""The pure core: protocol, model, diff, metrics, notifications, alerts.

Nothing in this package performs I/O, imports asyncio or reads the clock;
callers pass ``now`` in. See docs/architecture.md.
"""
