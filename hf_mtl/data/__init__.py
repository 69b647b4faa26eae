"""Data loading for recipes: local file readers, task data sources, and the bundled quickstart data."""

from .loaders import (
    FORMATS,
    DataFileError,
    infer_format,
    read_conll,
    read_delimited,
    read_file,
    read_jsonl,
    read_parquet,
)
from .sources import DataSource, DataSourceError, load_task_data, to_task_dataset

__all__ = [
    "FORMATS",
    "DataFileError",
    "DataSource",
    "DataSourceError",
    "infer_format",
    "load_task_data",
    "read_conll",
    "read_delimited",
    "read_file",
    "read_jsonl",
    "read_parquet",
    "to_task_dataset",
]
