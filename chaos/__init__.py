"""Chaos run ("proof under fire"): the whole stack as separate processes on the paper exchange replaying
market data fast, a seeded signal generator, a seeded chaos driver (kill -9 and restart of every process,
exchange faults, corrupted inputs), and a verdict computed from the exchange's own records and the state.

    python -m chaos --seed 7 --duration 600          # `make chaos`
    python -m chaos --short --seed 1                 # `make chaos-short` (about 2 minutes)

See chaos/README.md for what is checked and which clock each figure uses.
"""
