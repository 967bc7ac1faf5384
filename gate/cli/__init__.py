"""The ``gate`` command: one module per command group (``main`` builds the parser)."""
