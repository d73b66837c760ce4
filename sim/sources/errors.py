"""Errors of the world's data sources: the external-data interface's `DataError`, under the name
the simulation's sources have always used.

Error tree::

    ValueError
    └── SourceError (= atp.data.DataError)   a data source cannot give what the simulation asks
                      for: a missing or malformed file, a series that does not cover the
                      simulated period, or arguments the source cannot serve (e.g. ``slice_s``
                      finer than the data)
"""

from __future__ import annotations

from atp.data.errors import DataError as SourceError

__all__ = ["SourceError"]
