"""Readers for local data files: CoNLL column files, CSV/TSV, JSON Lines and Parquet.

Each reader returns a `datasets.Dataset` with the file's columns as they are (no task knowledge);
`hf_mtl.data.sources` turns those into a task's columns and labels. Errors name the file and line.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets

FORMATS = ("conll", "csv", "tsv", "jsonl", "parquet")

#: file suffix -> format, for `infer_format`
_SUFFIX_FORMATS = {
    ".conll": "conll",
    ".conllu": "conll",
    ".iob": "conll",
    ".iob2": "conll",
    ".bio": "conll",
    ".txt": "conll",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class DataFileError(ValueError):
    """A data file that cannot be read as requested; the message names the file (and line)."""


def infer_format(path: str | os.PathLike) -> str:
    """The format of `path` from its suffix (`.conll`/`.txt` -> conll, `.csv`, `.tsv`, `.jsonl`, `.parquet`)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise DataFileError(
            f"{path}: cannot tell the format from the suffix {suffix!r}; set `format` to one of {list(FORMATS)}."
        )
    return _SUFFIX_FORMATS[suffix]


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return path


def _check_encoding(path: Path, encoding: str) -> None:
    try:
        known = getattr(codecs.lookup(encoding), "_is_text_encoding", True)  # False for e.g. base64, rot13
    except LookupError:
        known = False
    if not known:
        raise DataFileError(
            f"{path}: unknown text encoding {encoding!r}; set the source's `encoding:` option to a Python codec "
            "name such as utf-8, utf-8-sig, latin-1 or cp1252."
        )


def _lines(handle: Iterable[str], path: Path, encoding: str) -> Iterator[str]:
    """The lines of an open text file; a byte that is not valid `encoding` is a `DataFileError` naming the line."""
    try:
        yield from handle
    except UnicodeError as err:  # UnicodeDecodeError, or e.g. utf-16 without a byte order mark
        raise _decode_error(path, encoding, err) from None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _decode_error(path: Path, encoding: str, err: UnicodeError) -> DataFileError:
    """A `DataFileError` naming the line and column of the first undecodable byte of `path`.

    The text reader decodes in chunks, so `err` does not tell the line; the file is decoded again in
    binary, line by line (line breaks counted as the readers count them: \\n, \\r\\n or \\r).
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    lineno, column, byte, after_cr, line_start = 1, 1, None, False, ""  # line_start: decoded text of the line so far
    with path.open("rb") as handle:
        chunks = iter(handle)  # split at 0x0a bytes, whatever the encoding; the decoder carries partial characters
        while True:
            chunk = next(chunks, None)
            try:
                text = decoder.decode(chunk if chunk is not None else b"", final=chunk is None)
            except UnicodeDecodeError as found:
                prefix = found.object[: found.start].decode(encoding, errors="replace")
                byte = found.object[found.start]
                breaks = list(_LINE_BREAK.finditer(prefix))
                lineno += len(breaks) - (after_cr and prefix.startswith("\n"))
                column = len(prefix) - breaks[-1].end() + 1 if breaks else len(line_start) + len(prefix) + 1
                break
            except UnicodeError:  # not about one byte (e.g. utf-16 without a byte order mark)
                break
            if chunk is None:
                break
            if text:
                lineno += len(_LINE_BREAK.findall(text)) - (after_cr and text.startswith("\n"))  # \r|\n split
                after_cr = text.endswith("\r")
                last = None
                for last in _LINE_BREAK.finditer(text):
                    pass
                line_start = text[last.end():] if last else line_start + text
    if byte is None:  # no offending byte found: report what the reader saw, without a line
        where, what = str(path), str(err)
    else:
        where, what = f"{path}:{lineno}", f"byte 0x{byte:02x} at column {column}"
    return DataFileError(
        f"{where}: not valid {encoding} text ({what}); convert the file to {encoding} or set the source's "
        "`encoding:` option (e.g. `encoding: latin-1`)."
    )


def read_conll(
    path: str | os.PathLike,
    *,
    token_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
    docstart: str | None = "-DOCSTART-",
    tokens_name: str = "tokens",
    tags_name: str = "tags",
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """Read a CoNLL-style column file: one token per line, sentences separated by blank lines.

    Args:
        path: the file.
        token_column, tag_column: column indices (negative counts from the end) of the word and its tag.
        separator: column separator; `None` splits on any run of whitespace (spaces or tabs).
        docstart: a token that marks a document boundary line (skipped, and ends any open sentence);
            `None` keeps such lines as ordinary tokens.
        tokens_name, tags_name: names of the two output columns (lists of strings per sentence).

    Lines holding only whitespace (spaces, tabs) end a sentence, like empty lines.
    """
    path = _check_file(path)
    # columns a line needs so that the token and tag columns exist and differ
    needed = max(2, *(c + 1 if c >= 0 else -c for c in (token_column, tag_column)))
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    current_tokens: list[str] = []
    current_tags: list[str] = []

    def flush() -> None:
        if current_tokens:
            sentences.append(list(current_tokens))
            tags.append(list(current_tags))
            current_tokens.clear()
            current_tags.clear()

    _check_encoding(path, encoding)
    with path.open(encoding=encoding, newline="") as handle:
        for lineno, raw in enumerate(_lines(handle, path, encoding), start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            fields = line.split(separator) if separator is not None else line.split()
            n = len(fields)
            if not (-n <= token_column < n and -n <= tag_column < n) or token_column % n == tag_column % n:
                raise DataFileError(
                    f"{path}:{lineno}: expected at least {needed} columns "
                    f"(token column {token_column}, tag column {tag_column}), got {len(fields)}: {line!r}"
                )
            token = fields[token_column]
            if docstart is not None and token == docstart:
                flush()
                continue
            current_tokens.append(token)
            current_tags.append(fields[tag_column])
    flush()
    return datasets.Dataset.from_dict({tokens_name: sentences, tags_name: tags})


def read_delimited(
    path: str | os.PathLike,
    *,
    delimiter: str = ",",
    header: bool = True,
    column_names: Sequence[str] | None = None,
    quotechar: str | None = '"',
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """Read a CSV/TSV file into string columns.

    Args:
        delimiter: field separator (`","` for CSV, `"\\t"` for TSV).
        header: whether the first row holds column names.
        column_names: names of the columns; required without a header, and with one it replaces the
            header's names.
        quotechar: quote character; `None` reads fields verbatim (GLUE-style TSV, where `"` is ordinary text).
    """
    path = _check_file(path)
    if not header and not column_names:
        raise DataFileError(f"{path}: the file has no header (header: false), so `column_names` are required.")
    quoting = csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE
    _check_encoding(path, encoding)
    with path.open(encoding=encoding, newline="") as handle:
        lines = _lines(handle, path, encoding)
        reader = csv.reader(lines, delimiter=delimiter, quotechar=quotechar or '"', quoting=quoting)
        rows = iter(reader)
        names = list(column_names) if column_names else None
        if header:
            header_row = next(rows, None)
            if header_row is None:
                raise DataFileError(f"{path}: the file is empty but a header row was expected.")
            if names is None:
                names = header_row
        assert names is not None
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataFileError(f"{path}: column names {duplicates} appear more than once in {names}.")
        columns: dict[str, list[str]] = {name: [] for name in names}
        for row in rows:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(names):
                raise DataFileError(
                    f"{path}:{reader.line_num}: expected {len(names)} fields ({', '.join(names)}), got {len(row)}: "
                    f"{row!r}" + ("" if quotechar else " (quoting is off; is the delimiter right?)")
                )
            for name, value in zip(names, row):
                columns[name].append(value)
    return datasets.Dataset.from_dict(columns)


def read_jsonl(path: str | os.PathLike, *, encoding: str = "utf-8") -> datasets.Dataset:
    """Read a JSON Lines file (one JSON object per line; blank lines are skipped)."""
    path = _check_file(path)
    records: list[dict[str, Any]] = []
    _check_encoding(path, encoding)
    with path.open(encoding=encoding) as handle:
        for lineno, line in enumerate(_lines(handle, path, encoding), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{path}:{lineno}: invalid JSON ({err.msg} at column {err.colno}).") from None
            if not isinstance(record, dict):
                raise DataFileError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}.")
            records.append(record)
    try:
        return datasets.Dataset.from_list(records)
    except Exception as err:  # arrow type clashes between rows
        raise DataFileError(f"{path}: rows do not share one column layout ({err}).") from None


def read_parquet(path: str | os.PathLike) -> datasets.Dataset:
    """Read a Parquet file."""
    import pyarrow.parquet as pq

    path = _check_file(path)
    try:
        table = pq.read_table(path)
    except Exception as err:
        raise DataFileError(f"{path}: not a readable Parquet file ({err}).") from None
    return datasets.Dataset(table)


def read_file(path: str | os.PathLike, format: str | None = None, **options: Any) -> datasets.Dataset:
    """Read one data file with the reader of `format` (inferred from the suffix when None).

    `options` are the keyword arguments of that reader (`read_conll`, `read_delimited`, ...); CSV and
    TSV differ only in their default delimiter and quoting.
    """
    format = format or infer_format(path)
    if format == "conll":
        return read_conll(path, **options)
    if format in ("csv", "tsv"):
        defaults = {"delimiter": ","} if format == "csv" else {"delimiter": "\t", "quotechar": None}
        return read_delimited(path, **{**defaults, **options})
    if format == "jsonl":
        return read_jsonl(path, **options)
    if format == "parquet":
        return read_parquet(path)
    raise DataFileError(f"{path}: unknown format {format!r}; expected one of {list(FORMATS)}.")


__all__ = [
    "FORMATS",
    "DataFileError",
    "infer_format",
    "read_conll",
    "read_delimited",
    "read_file",
    "read_jsonl",
    "read_parquet",
]
