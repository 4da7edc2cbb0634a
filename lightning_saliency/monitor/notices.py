"""How the monitor speaks to the user: Python warnings, on the process that has something to say
(the engine and the publisher speak on rank zero only, as Lightning's ``rank_zero_warn`` does)."""
from __future__ import annotations

import warnings


def warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)
