"""Executor's common library: pure domain (shared.domain) and adapters (shared.adapters)."""
