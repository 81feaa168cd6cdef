"""The demo: the whole stack under supervisord on the paper exchange, one PEAK signal, a trade's whole life."""
