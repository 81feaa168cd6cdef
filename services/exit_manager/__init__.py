"""exit_manager: owns the position from entry filled to closed."""
