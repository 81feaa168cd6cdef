"""metrics: Executor's Prometheus endpoint (`/metrics`), read-only, off the trading path."""
