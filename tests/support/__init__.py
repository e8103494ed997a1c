"""Helpers shared by the test suite (builders, a running server, a client)."""
