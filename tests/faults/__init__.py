"""Fault injection: storms of bookings against real services while something breaks.

`make test` runs the short form of each fault; `make test-faults` sets EVENTLY_FAULTS=full
and runs the long form (bigger storms, more rounds, a larger fuzzing budget).
"""

import os

FULL = os.environ.get("EVENTLY_FAULTS", "short") == "full"


def scale(short: int, full: int) -> int:
    """The size of a storm: `short` in `make test`, `full` in `make test-faults`."""
    return full if FULL else short
