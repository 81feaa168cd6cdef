"""Adapters wrapping the outside world: Redis, Binance REST, files, webhooks."""
