"""The external-data interface (D2.1 F2.FOA4, F2.FMAN6): weather, prices, smart-meter readings,
the congestion point of a meter, aggregated non-flexible demand, for the FOA's generators and
the FMAN, from files, over HTTP or in-process (atp/data/README.md)."""

from atp.data.errors import DataError
from atp.data.files import FileDataSource, read_series_file
from atp.data.http import HttpDataSource, create_data_app
from atp.data.source import QUANTITIES, ArrayDataSource, DataSeries, DataSource, Quantity, quantity_of, resample

__all__ = [
    "QUANTITIES",
    "ArrayDataSource",
    "DataError",
    "DataSeries",
    "DataSource",
    "FileDataSource",
    "HttpDataSource",
    "Quantity",
    "create_data_app",
    "quantity_of",
    "read_series_file",
    "resample",
]
