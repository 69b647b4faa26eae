"""Data loading for recipes: local file readers and their format registry, task data sources, and the
bundled quickstart data."""

from .loaders import (
    DATA_FORMATS,
    DataFileError,
    DataFormat,
    DataFormatOptionError,
    data_format_names,
    infer_format,
    read_conll,
    read_delimited,
    read_file,
    read_jsonl,
    read_parquet,
    register_data_format,
)
from .sources import DataSource, DataSourceError, load_task_data, to_task_dataset

__all__ = [
    "DATA_FORMATS",
    "DataFileError",
    "DataFormat",
    "DataFormatOptionError",
    "DataSource",
    "DataSourceError",
    "data_format_names",
    "infer_format",
    "load_task_data",
    "read_conll",
    "read_delimited",
    "read_file",
    "read_jsonl",
    "read_parquet",
    "register_data_format",
    "to_task_dataset",
]
