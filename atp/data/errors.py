"""Errors of the external-data interface: one class, with a message naming the field or file.

AtpError (atp.errors)
+-- ValidationError
    +-- DataError   a source cannot give what is asked: a missing or malformed file, a series
                    that does not cover the period, an unknown quantity or key, or a step
                    the data cannot be resampled to (also a ValueError)
"""

from __future__ import annotations

from atp.errors import ValidationError

__all__ = ["DataError"]


class DataError(ValidationError, ValueError):
    """A data source cannot give what is asked; the message names the field or file."""
