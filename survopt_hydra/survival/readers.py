"""Data files as a stream of parsed columns: CSV and Parquet through Apache Arrow.

:func:`open_source` returns a source with the file's ``header`` (checked: not empty, no NUL,
no duplicate names) and ``batches(names)``, which yields ``(rows, cells)`` per batch of rows:
the 1-based data-row numbers and the named columns read by the cell rule
(:func:`.cells.parse`). Memory stays bounded by one batch, whatever the file's length.

CSV: UTF-8 (a BOM is skipped), RFC 4180 quoting as Python's csv module reads it (quoted
newlines, doubled quotes, fields up to ``csv.field_size_limit()`` characters), cells stripped
of whitespace, blank rows skipped (rows are numbered without them). Arrow parses the file;
whenever it reports a problem (not UTF-8, a row of the wrong width, an oversized field) the
file is scanned with the csv module, the reference, which words the first problem exactly as
it always has - or, if the csv module reads the file after all (a row of only spaces, say),
reading goes on with it from the row where Arrow stopped. Parquet: the typed columns as
stored; nulls and NaN are missing cells, every row counts (Parquet has no blank lines).
:class:`TableSource` reads an Arrow table in memory (the Python API's DataFrames) the same way.
"""
from __future__ import annotations

import csv
import difflib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .cells import WHITESPACE, Cells, DataError, arrow, from_numpy, parse, strings, to_numpy

CSV_BLOCK_BYTES = 1 << 20  # Arrow reads and converts the file this many bytes at a time (its default)
PARQUET_BATCH_ROWS = 16384
PARQUET_THREADS = True
FALLBACK_BATCH_ROWS = 8192  # rows per batch when the csv module reads
SHOWN = 10  # names listed in one message before "and N more"


def listing(names: Sequence[str], limit: int = SHOWN, fmt=str) -> str:
    """'a, b, c' for the first ``limit`` names (each cut to 60 characters), then 'and N more': a
    message stays one short line whatever the file."""
    shown = ", ".join(fmt(n if len(n) <= 60 else n[:60] + "...") for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_header(label: str, header: list[str] | None) -> list[str]:
    """The header, refused when absent, binary-looking or with duplicate names (linear in its width)."""
    if header is None:
        raise DataError(f"{label}: file is empty (no header row)")
    if any("\x00" in name for name in header):
        raise DataError(f"{label}: NUL bytes in the header (a UTF-16 or binary file?); save it as a UTF-8 CSV")
    dupes = sorted(name for name, count in Counter(header).items() if count > 1)
    if dupes:
        raise DataError(f"{label}: duplicate column name(s): {listing(dupes)}")
    return header


def find_columns(label: str, names: Sequence[str], header: Sequence[str]) -> dict[str, int]:
    """Header index of each name; one line naming the absent columns (with a close match)."""
    where = {name: i for i, name in enumerate(header)}
    absent = [name for name in names if name not in where]
    if not absent:
        return {name: where[name] for name in names}
    available = f"available: {listing(list(header), 20)}"
    if len(absent) == 1:
        # difflib compares with every name: bounded for a very wide file (then exact up to case)
        pool = header if len(header) <= 5000 else [h for h in header if h.lower() == absent[0].lower()]
        close = difflib.get_close_matches(absent[0], pool, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"{label}: column {absent[0]!r} not found; {available}{hint}")
    raise DataError(f"{label}: {len(absent)} columns not found: {listing(absent, fmt=repr)}; {available}")


def csv_rows(path: Path, label: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of every row, header first; file-level problems as one DataError.

    The csv module's reading, the reference for Arrow's. UTF-8 only (a UTF-16, Latin-1 or binary
    file is refused, never guessed), and a field over csv's 128 KiB limit is refused."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                yield reader.line_num, [c.strip() for c in row]
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise DataError(f"{label}: not UTF-8 text (byte 0x{byte}: a UTF-16, Latin-1 or binary file?); "
                        "save it as a UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{label}: not a readable CSV near line {reader.line_num} ({exc}); a field over 128 KiB "
                        "or binary data?") from None
    except OSError as exc:
        raise DataError(f"{label}: cannot read the file ({exc.strerror or exc})") from None


def check_width(label: str, header: list[str], number: int, line: int, row: list[str]) -> None:
    if len(row) != len(header):
        raise DataError(f"{label}: row {number} (line {line}) has {len(row)} fields, header has {len(header)}")


def scan_csv(path: Path, label: str) -> None:
    """Read the whole file with the csv module and raise its first problem, in the order the loader
    always reported them: unreadable text anywhere, then the header, then no rows, then a row's width."""
    it = csv_rows(path, label)
    header = next(it, (0, None))[1]
    rows, wrong = 0, None
    for line, row in it:
        if any(row):
            rows += 1
            if wrong is None and len(row) != len(header):
                wrong = (rows, line, row)
    check_header(label, header)
    if not rows:
        raise DataError(f"{label}: no data rows after the header")
    if wrong:
        check_width(label, header, wrong[0], wrong[1], wrong[2])


def is_parquet(path: Path) -> bool:
    """By suffix, or by Parquet's magic bytes at the start of the file."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


def open_source(path: Path, label: str) -> "CsvSource | ParquetSource":
    try:
        parquet = is_parquet(path)
    except OSError as exc:
        raise DataError(f"{label}: cannot read the file ({exc.strerror or exc})") from None
    return ParquetSource(path, label) if parquet else CsvSource(path, label)


class _Fallback(Exception):
    """Arrow met something the csv module should judge."""


class CsvSource:
    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = path, label
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                self.raw = next(csv.reader(handle), None)
        except (UnicodeDecodeError, csv.Error):
            self.raw = None
            scan_csv(path, label)  # words it
        except OSError as exc:
            raise DataError(f"{label}: cannot read the file ({exc.strerror or exc})") from None
        header = None if self.raw is None else [c.strip() for c in self.raw]
        try:
            self.header = check_header(label, header)
        except DataError:
            scan_csv(path, label)  # a problem further down the file is reported first, as always
            raise

    def check(self) -> None:
        """Raise the file's own first problem (unreadable text, header, no rows, a row's width), if any."""
        scan_csv(self.path, self.label)

    def rows_bound(self) -> int:
        """The number of line breaks, a bound on the data rows (a file mixing CR-only lines with others
        may exceed it; the loader's buffers then grow)."""
        counts = {b"\n": 0, b"\r": 0}
        try:
            for sep in counts:  # CR-only line ends (old Mac files) counted only when there is no LF
                with open(self.path, "rb") as handle:
                    while block := handle.read(1 << 22):
                        counts[sep] += block.count(sep)
                if counts[sep]:
                    break
        except OSError as exc:
            raise DataError(f"{self.label}: cannot read the file ({exc.strerror or exc})") from None
        return max(counts.values()) + 1

    def batches(self, names: Sequence[str]) -> Iterator[tuple[np.ndarray, dict[str, Cells]]]:
        """(1-based data-row numbers, {name: cells}) per batch of non-blank rows."""
        pa, pc = arrow()
        index = find_columns(self.label, names, self.header)
        done = 0
        try:
            for batch in self._arrow_batches(pa):
                cells = {name: parse(batch.column(i)) for name, i in index.items()}
                keep = _not_blank(pa, pc, batch, cells, set(index.values()))
                if keep is not None:
                    cells = {name: c.take(keep) for name, c in cells.items()}
                n = len(next(iter(cells.values())))
                yield np.arange(done + 1, done + n + 1, dtype=np.int64), cells
                done += n
        except _Fallback:
            scan_csv(self.path, self.label)  # raises, unless the csv module reads the file
            yield from self._python_batches(pa, index, done)
            return
        if not done:
            raise DataError(f"{self.label}: no data rows after the header")

    def _arrow_batches(self, pa: Any) -> Iterator[Any]:
        import pyarrow.csv as pcsv

        # No invalid_row_handler (which could skip a row of only spaces): a Python callable held by
        # Arrow's C++ options can be released after the interpreter's shutdown and abort the process.
        limit = csv.field_size_limit()
        try:
            with pcsv.open_csv(self.path, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                               parse_options=pcsv.ParseOptions(newlines_in_values=True),
                               convert_options=pcsv.ConvertOptions(
                                   column_types={n: pa.string() for n in self.raw}, strings_can_be_null=False,
                                   quoted_strings_can_be_null=False)) as reader:
                if reader.schema.names != self.raw:
                    raise _Fallback
                for batch in reader:
                    for column in batch.columns:  # the csv module's field limit, in characters
                        if len(column) and pa.compute.max(pa.compute.binary_length(column)).as_py() > limit and \
                                pa.compute.max(pa.compute.utf8_length(column)).as_py() > limit:
                            raise _Fallback
                    yield batch
        except (pa.ArrowException, OSError):
            raise _Fallback from None

    def _python_batches(self, pa: Any, index: dict[str, int], skip: int) -> Iterator[tuple[np.ndarray, dict]]:
        """The csv module's rows from data row ``skip + 1`` on, as batches (Arrow gave up on this file)."""
        it = csv_rows(self.path, self.label)
        next(it)
        number, chunk = 0, []
        for _, row in it:
            if not any(row):
                continue
            number += 1
            if number > skip:
                chunk.append(row)
            if len(chunk) == FALLBACK_BATCH_ROWS:
                yield self._python_batch(pa, index, chunk, number)
                chunk = []
        if chunk:
            yield self._python_batch(pa, index, chunk, number)
        if not number:
            raise DataError(f"{self.label}: no data rows after the header")

    @staticmethod
    def _python_batch(pa: Any, index: dict[str, int], chunk: list[list[str]], last: int):
        cells = {name: parse(strings([row[i] for row in chunk])) for name, i in index.items()}
        return np.arange(last - len(chunk) + 1, last + 1, dtype=np.int64), cells


def _not_blank(pa: Any, pc: Any, batch: Any, cells: dict[str, Cells], used: set[int]) -> np.ndarray | None:
    """Positions of the rows that are not blank (every cell empty after stripping), or None if all are not."""
    blank = None
    for c in cells.values():
        empty = to_numpy(pc.binary_length(c.text)) == 0
        blank = empty if blank is None else blank & empty
        if not blank.any():
            return None
    maybe = np.flatnonzero(blank)
    for i, column in enumerate(batch.columns):
        if i not in used and len(maybe):
            text = pc.utf8_trim(column.take(from_numpy(maybe.astype(np.int64))), characters=WHITESPACE)
            maybe = maybe[to_numpy(pc.binary_length(text)) == 0]
    blank = np.zeros(batch.num_rows, dtype=bool)
    blank[maybe] = True
    return np.flatnonzero(~blank) if blank.any() else None


class ParquetSource:
    def __init__(self, path: Path, label: str) -> None:
        pa, _ = arrow()
        import pyarrow.parquet as pq

        self.path, self.label = path, label
        try:
            # read page by page through a 1 MB buffer, not a whole row group at once (a file written
            # with one row group per 10^6 rows would otherwise sit in memory compressed, twice the peak)
            self.file = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{label}: not a readable Parquet file ({_first_line(exc)})") from None
        self.header = check_header(label, list(self.file.schema_arrow.names))

    def check(self) -> None:
        """Nothing to add: the file was read when opened."""

    def rows_bound(self) -> int:
        """The rows the file says it holds (the loader refuses a count that cannot fit in memory)."""
        return max(self.file.metadata.num_rows, 0)

    def batches(self, names: Sequence[str]) -> Iterator[tuple[np.ndarray, dict[str, Cells]]]:
        pa, _ = arrow()
        check_types(self.label, self.file.schema_arrow, names, self.header)
        done = 0
        try:
            for batch in self.file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(names),
                                                use_threads=PARQUET_THREADS):
                cells = {name: parse(batch.column(name)) for name in names}
                yield np.arange(done + 1, done + batch.num_rows + 1, dtype=np.int64), cells
                done += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.label}: not a readable Parquet file ({_first_line(exc)})") from None
        if not done:
            raise DataError(f"{self.label}: no data rows")


def check_types(label: str, schema: Any, names: Sequence[str], header: Sequence[str]) -> None:
    """The named columns exist and hold types the cell rule reads (numbers, booleans, text)."""
    pa, _ = arrow()
    find_columns(label, names, header)
    for name in names:
        kind = schema.field(name).type
        if not _readable(pa, kind):
            raise DataError(f"{label}: column {name!r} holds {kind} values; allowed: numbers, booleans, "
                            "text (leave it out with data.feature_cols)")


class TableSource:
    """An Arrow table in memory (a pandas DataFrame or a numpy array, see :mod:`.frames`), read as a
    Parquet file's typed columns are: the same cell rule, batch by batch, rows numbered from 1."""

    def __init__(self, table: Any, label: str) -> None:
        self.table, self.label = table, label
        self.header = check_header(label, list(table.column_names))

    def check(self) -> None:
        """Nothing to add: there is no file to misread."""

    def rows_bound(self) -> int:
        return self.table.num_rows

    def batches(self, names: Sequence[str]) -> Iterator[tuple[np.ndarray, dict[str, Cells]]]:
        check_types(self.label, self.table.schema, names, self.header)
        done = 0
        for batch in self.table.select(list(names)).to_batches(max_chunksize=PARQUET_BATCH_ROWS):
            if batch.num_rows:
                cells = {name: parse(batch.column(name)) for name in names}
                yield np.arange(done + 1, done + batch.num_rows + 1, dtype=np.int64), cells
                done += batch.num_rows
        if not done:
            raise DataError(f"{self.label}: no data rows")


def _readable(pa: Any, kind: Any) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            or pa.types.is_boolean(kind) or pa.types.is_null(kind) or pa.types.is_string(kind)
            or pa.types.is_large_string(kind))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
