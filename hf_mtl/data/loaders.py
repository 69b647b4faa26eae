"""Readers for local data files, and the registry of file formats a recipe can name.

A format is one reader function plus one `register_data_format` call: its name (a recipe's `format:`), the
file suffixes it claims (for `infer_format`), and its reader options with the kind a recipe checks them
against. The five built-in formats (CoNLL column files, CSV, TSV, JSON Lines, Parquet) are registered at the
bottom of this module. Each reader returns a `datasets.Dataset` with the file's columns as they are (no
task knowledge); `hf_mtl.data.sources` turns those into a task's columns and labels. Errors name the file
and line.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

#: the kinds a format may give its reader options (a recipe checks values against them); a trailing `?`
#: lets the option also be set to null explicitly (e.g. `quotechar: null`)
OPTION_KINDS = ("str", "bool", "int", "float", "number", "list[str]", "map[str]", "map[list]")


class DataFileError(ValueError):
    """A data file that cannot be read as requested; the message names the file (and line)."""


class DataFormatOptionError(ValueError):
    """Reader options that do not work together; `option` names the option a recipe error points at."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class DataFormat:
    """A registered file format (see `register_data_format`)."""

    name: str
    reader: Callable[..., datasets.Dataset]
    suffixes: tuple[str, ...] = ()
    #: reader option -> kind (one of `OPTION_KINDS`, `?` for nullable), in the order messages list them
    options: Mapping[str, str] = field(default_factory=dict)
    #: keyword arguments passed to the reader before the source's own options
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: the reader yields per-word tags: it takes `tokens_name=`/`tags_name=` (the token task's columns), and
    #: only token classification tasks may read it
    word_tags: bool = False
    #: checks a source's options together (before any file is read); raises `DataFormatOptionError`
    check_options: Callable[[Mapping[str, Any]], None] | None = None
    #: `streamer(path, **options) -> datasets.IterableDataset`, the file read as it is consumed (a recipe's
    #: `streaming: true`); None: the format cannot stream
    streamer: Callable[..., datasets.IterableDataset] | None = None

    def read(self, path: str | os.PathLike, **options: Any) -> datasets.Dataset:
        """Read one file with this format's defaults overridden by `options`."""
        return self.reader(path, **{**self.defaults, **options})

    def stream(self, path: str | os.PathLike, **options: Any) -> datasets.IterableDataset:
        """Stream one file (read lazily, as training consumes it) with the same options as `read`."""
        if self.streamer is None:
            streamable = [f.name for f in DATA_FORMATS.values() if f.streamer is not None]
            raise DataFileError(
                f"{path}: format {self.name!r} cannot stream; formats that can: {streamable}. Convert the file, or "
                "drop `streaming: true`."
            )
        _check_file(path)
        return self.streamer(path, **{**self.defaults, **options})


#: registered formats by name, in registration order (the order messages list them)
DATA_FORMATS: dict[str, DataFormat] = {}


def register_data_format(
    name: str,
    reader: Callable[..., datasets.Dataset],
    *,
    suffixes: Sequence[str] = (),
    options: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    word_tags: bool = False,
    check_options: Callable[[Mapping[str, Any]], None] | None = None,
    streamer: Callable[..., datasets.IterableDataset] | None = None,
    replace: bool = False,
) -> DataFormat:
    """Make a file format available to recipes (`format: <name>`) and to `read_file`.

    Args:
        name: the format's name in recipes.
        reader: `reader(path, **options) -> datasets.Dataset`; raise `DataFileError` naming the file and line
            for content it cannot read.
        suffixes: file suffixes (with the dot, e.g. `".json"`) that `infer_format` maps to this format.
        options: the reader's keyword arguments a recipe may set, with their kind (`"str"`, `"bool"`, `"int"`,
            `"list[str]"`, ...; `"str?"` also accepts null). A recipe refuses options of other formats.
        defaults: keyword arguments given to the reader before the recipe's options.
        word_tags: the reader yields a sentence's words and tags (like CoNLL files): it is given
            `tokens_name=` and `tags_name=` (the token task's column names) and refused for other tasks.
        check_options: called with a source's options when a recipe is read; raises
            `DataFormatOptionError(option, message)` for options that do not work together.
        streamer: `streamer(path, **options) -> datasets.IterableDataset` reading the file lazily (a recipe's
            `streaming: true`), taking the same options as `reader`; None if the format cannot stream.
        replace: allow replacing a registered format of the same name (and its suffixes).
    """
    options = dict(options or {})
    for option, kind in options.items():
        if kind.removesuffix("?") not in OPTION_KINDS:
            raise ValueError(f"data format {name!r}: option {option!r} has kind {kind!r}; expected one of "
                             f"{list(OPTION_KINDS)} (with a trailing ? to allow null).")
    suffixes = tuple(s.lower() for s in suffixes)
    bad = [s for s in suffixes if not s.startswith(".")]
    if bad:
        raise ValueError(f"data format {name!r}: suffixes {bad} must start with a dot, e.g. '.json'.")
    if name in DATA_FORMATS and not replace:
        raise ValueError(f"data format {name!r} is already registered; pass replace=True to replace it.")
    claimed = {s: other.name for other in DATA_FORMATS.values() if other.name != name for s in other.suffixes}
    taken = {s: claimed[s] for s in suffixes if s in claimed}
    if taken and not replace:
        raise ValueError(f"data format {name!r}: suffixes already claimed by other formats {taken}; pass replace=True "
                         "to take them over.")
    for other_name in set(taken.values()):  # replace=True: the suffixes move to the new format
        other = DATA_FORMATS[other_name]
        kept = tuple(s for s in other.suffixes if s not in taken)
        DATA_FORMATS[other_name] = dataclasses.replace(other, suffixes=kept)
    data_format = DataFormat(name=name, reader=reader, suffixes=suffixes, options=options, defaults=dict(defaults or {}),
                             word_tags=word_tags, check_options=check_options, streamer=streamer)
    DATA_FORMATS[name] = data_format
    return data_format


def data_format_names() -> tuple[str, ...]:
    """The registered formats' names, in registration order."""
    return tuple(DATA_FORMATS)


def reader_option_kinds() -> dict[str, str]:
    """Every registered format's reader options with their kind (the first registration's kind wins)."""
    out: dict[str, str] = {}
    for data_format in DATA_FORMATS.values():
        for option, kind in data_format.options.items():
            out.setdefault(option, kind)
    return out


def get_data_format(name: str, path: str | os.PathLike | None = None) -> DataFormat:
    """The registered format `name`; a `DataFileError` (naming `path`, if given) listing the known ones."""
    if name not in DATA_FORMATS:
        where = f"{path}: " if path is not None else ""
        raise DataFileError(f"{where}unknown format {name!r}; expected one of {list(DATA_FORMATS)}.")
    return DATA_FORMATS[name]


def infer_format(path: str | os.PathLike) -> str:
    """The format of `path` from its suffix (`.conll`/`.txt` -> conll, `.csv`, `.tsv`, `.jsonl`, `.parquet`, and
    the suffixes of formats registered later)."""
    suffix = Path(path).suffix.lower()
    for data_format in DATA_FORMATS.values():
        if suffix in data_format.suffixes:
            return data_format.name
    raise DataFileError(
        f"{path}: cannot tell the format from the suffix {suffix!r}; set `format` to one of {list(DATA_FORMATS)}."
    )


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
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    for row in iter_conll(path, token_column=token_column, tag_column=tag_column, separator=separator,
                          docstart=docstart, tokens_name=tokens_name, tags_name=tags_name, encoding=encoding):
        sentences.append(row[tokens_name])
        tags.append(row[tags_name])
    return datasets.Dataset.from_dict({tokens_name: sentences, tags_name: tags})


def iter_conll(
    path: str | os.PathLike,
    *,
    token_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
    docstart: str | None = "-DOCSTART-",
    tokens_name: str = "tokens",
    tags_name: str = "tags",
    encoding: str = "utf-8",
) -> Iterator[dict[str, list[str]]]:
    """The sentences of a CoNLL-style column file, one `{tokens_name: words, tags_name: tags}` at a time
    (what `read_conll` collects and `stream_conll` streams)."""
    path = _check_file(path)
    # columns a line needs so that the token and tag columns exist and differ
    needed = max(2, *(c + 1 if c >= 0 else -c for c in (token_column, tag_column)))
    current_tokens: list[str] = []
    current_tags: list[str] = []

    _check_encoding(path, encoding)
    with path.open(encoding=encoding, newline="") as handle:
        for lineno, raw in enumerate(_lines(handle, path, encoding), start=1):
            line = raw.rstrip("\r\n")
            fields = (line.split(separator) if separator is not None else line.split()) if line.strip() else []
            if fields:
                n = len(fields)
                if not (-n <= token_column < n and -n <= tag_column < n) or token_column % n == tag_column % n:
                    raise DataFileError(
                        f"{path}:{lineno}: expected at least {needed} columns "
                        f"(token column {token_column}, tag column {tag_column}), got {len(fields)}: {line!r}"
                    )
            if not fields or (docstart is not None and fields[token_column] == docstart):
                if current_tokens:  # a sentence ends at a blank line or a document boundary
                    yield {tokens_name: current_tokens, tags_name: current_tags}
                    current_tokens, current_tags = [], []
                continue
            current_tokens.append(fields[token_column])
            current_tags.append(fields[tag_column])
    if current_tokens:
        yield {tokens_name: current_tokens, tags_name: current_tags}


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

    `options` are the keyword arguments of that reader (`read_conll`, `read_delimited`, ...), on top of the
    format's defaults (CSV and TSV differ only in their default delimiter and quoting).
    """
    format = format or infer_format(path)
    return get_data_format(format, path).read(path, **options)


def stream_conll(path: str | os.PathLike, **options: Any) -> datasets.IterableDataset:
    """A CoNLL-style column file as a stream of sentences (`iter_conll` through `datasets`' generator
    streaming), with `read_conll`'s options."""
    names = {"tokens_name": options.get("tokens_name", "tokens"), "tags_name": options.get("tags_name", "tags")}
    features = datasets.Features({name: datasets.Sequence(datasets.Value("string")) for name in names.values()})
    return datasets.IterableDataset.from_generator(
        iter_conll, features=features, gen_kwargs={"path": str(path), **options}
    )


def stream_delimited(
    path: str | os.PathLike,
    *,
    delimiter: str = ",",
    header: bool = True,
    column_names: Sequence[str] | None = None,
    quotechar: str | None = '"',
    encoding: str = "utf-8",
) -> datasets.IterableDataset:
    """A CSV/TSV file as a stream (`datasets`' csv builder), with `read_delimited`'s options and, like it,
    string columns and empty cells kept as empty strings."""
    path = _check_file(path)
    names = list(column_names) if column_names else None
    if names is None:
        if not header:
            raise DataFileError(f"{path}: the file has no header (header: false), so `column_names` are required.")
        with path.open(encoding=encoding, newline="") as handle:
            names = next(csv.reader(handle, delimiter=delimiter, quotechar=quotechar or '"',
                                    quoting=csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE), None)
        if names is None:
            raise DataFileError(f"{path}: the file is empty but a header row was expected.")
    features = datasets.Features({name: datasets.Value("string") for name in names})
    return datasets.load_dataset(
        "csv", data_files=str(path), split="train", streaming=True, delimiter=delimiter, header=0 if header else None,
        column_names=names, quotechar=quotechar or '"', quoting=csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE,
        encoding=encoding, features=features, keep_default_na=False, na_filter=False,
    )


def stream_jsonl(path: str | os.PathLike, *, encoding: str = "utf-8") -> datasets.IterableDataset:
    """A JSON Lines file as a stream (`datasets`' json builder)."""
    return datasets.load_dataset("json", data_files=str(path), split="train", streaming=True, encoding=encoding)


def stream_parquet(path: str | os.PathLike) -> datasets.IterableDataset:
    """A Parquet file as a stream (`datasets`' parquet builder)."""
    return datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)


def _check_delimited_options(options: Mapping[str, Any]) -> None:
    if not options.get("header", True) and not options.get("column_names"):
        raise DataFormatOptionError("column_names", "required when header is false.")


# ---------------------------------------------------------------------------- the built-in formats
_DELIMITED_OPTIONS = {"header": "bool", "column_names": "list[str]", "delimiter": "str", "quotechar": "str?",
                      "encoding": "str"}
register_data_format(
    "conll", read_conll, suffixes=(".conll", ".conllu", ".iob", ".iob2", ".bio", ".txt"), word_tags=True,
    options={"token_column": "int", "tag_column": "int", "separator": "str?", "docstart": "str?", "encoding": "str"},
    streamer=stream_conll,
)
register_data_format("csv", read_delimited, suffixes=(".csv",), options=_DELIMITED_OPTIONS, defaults={"delimiter": ","},
                     check_options=_check_delimited_options, streamer=stream_delimited)
register_data_format("tsv", read_delimited, suffixes=(".tsv",), options=_DELIMITED_OPTIONS,
                     defaults={"delimiter": "\t", "quotechar": None}, check_options=_check_delimited_options,
                     streamer=stream_delimited)
register_data_format("jsonl", read_jsonl, suffixes=(".jsonl", ".ndjson"), options={"encoding": "str"},
                     streamer=stream_jsonl)
register_data_format("parquet", read_parquet, suffixes=(".parquet", ".pq"), streamer=stream_parquet)

__all__ = [
    "DATA_FORMATS",
    "OPTION_KINDS",
    "DataFileError",
    "DataFormat",
    "DataFormatOptionError",
    "data_format_names",
    "get_data_format",
    "infer_format",
    "iter_conll",
    "read_conll",
    "read_delimited",
    "read_file",
    "read_jsonl",
    "read_parquet",
    "reader_option_kinds",
    "register_data_format",
    "stream_conll",
    "stream_delimited",
    "stream_jsonl",
    "stream_parquet",
]
