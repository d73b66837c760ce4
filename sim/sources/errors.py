"""Errors of the world's data sources: one class, raised with a message naming the field or file.

Error tree::

    ValueError
    └── SourceError   a data source cannot give what the simulation asks for: a missing or
                      malformed file, a series that does not cover the simulated period, or
                      arguments the source cannot serve (e.g. ``slice_s`` finer than the data)
"""

from __future__ import annotations

__all__ = ["SourceError"]


class SourceError(ValueError):
    """A data source cannot give what the simulation asks for; the message names the field or file."""
