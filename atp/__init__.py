"""The GOFLEX Automatic Trading Platform: Flex-Offers, FOA, FMAN, FMAR and their interface.

`atp` imports nothing from the simulation (`sim`), `hil` or `reports`: it runs as real services.
"""

from atp.errors import (
    AtpError,
    InfeasibleError,
    InputFileError,
    InvalidOfferError,
    Problem,
    ProtocolError,
    SolverError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "AtpError",
    "InfeasibleError",
    "InputFileError",
    "InvalidOfferError",
    "Problem",
    "ProtocolError",
    "SolverError",
    "ValidationError",
    "__version__",
]
