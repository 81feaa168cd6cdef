"""position_engine: owns the position from signal to entry filled."""
