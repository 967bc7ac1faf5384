"""The gate command (gate/cli)."""
