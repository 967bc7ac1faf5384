"""Trust (gate/trust): signed bundles, deltas and commands."""
