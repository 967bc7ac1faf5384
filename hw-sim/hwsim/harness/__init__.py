"""Reliability harnesses (``scripts/reliability``): power cuts, broker faults and sustained load
against real ``gate run`` processes, a real mosquitto and simulated hardware. Each returns a
``Report`` of what was tried and what held; RELIABILITY.md carries the figures of a full run,
and the test suite runs each one briefly (tests/system/test_reliability.py)."""
