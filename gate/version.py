"""The version of this copy of gate. A checkout says the base version; ``scripts/release`` and
``scripts/install-pi.sh`` write the built one here (``0.1.0+g<commit>``, or the tag's version) in
the copy they build from, so that ``gate --version``, the status socket, the status topic and the
start-up log line name the exact release a lane runs."""

__version__ = "0.1.0"
