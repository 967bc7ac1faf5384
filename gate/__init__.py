"""gate: firmware of a Raspberry Pi turnstile controller.

Pure code (ticket formats, decisions, turnstile rules) lives apart from I/O (drivers, database):
start reading at ``gate.lane.loop`` for the decision loop and ``gate.daemon`` for how it is wired.
"""

from gate.version import __version__

__all__ = ["__version__"]
