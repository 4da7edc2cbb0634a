"""How the monitor speaks to the user: Python warnings, on the process that has something to say
(the engine and the publisher speak on rank zero only, as Lightning's ``rank_zero_warn`` does)."""
from __future__ import annotations

import warnings


def warn(message: str, rank: int = 0) -> None:
    """A ``UserWarning`` from the process of ``rank`` zero only (every other rank stays quiet, as
    Lightning's ``rank_zero_warn`` does): the one way the package warns."""
    if rank == 0:
        warnings.warn(message, UserWarning, stacklevel=3)
