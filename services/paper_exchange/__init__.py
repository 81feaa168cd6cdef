"""A Binance-compatible paper exchange: a real HTTP server on loopback (see server.py, engine.py)."""
