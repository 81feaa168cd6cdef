"""Executor's processes; each runs as `python -m services.NAME`."""
