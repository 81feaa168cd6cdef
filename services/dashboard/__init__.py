"""dashboard: the operator's read-only web page (processes, position, orders, chart, audit trail, trades)."""
