"""Read and write MixInstruct-format files: a JSON array or JSON lines, gzipped when named ``*.gz``.

Readers stream: a JSON array is decoded element by element from fixed-size chunks
(:data:`CHUNK_SIZE` characters), JSON lines line by line, so a 100k-record training split never
sits in memory whole. The format is told by the first non-whitespace character (``[`` or ``{``),
not by the file name. Every problem becomes a :class:`DataFormatError` that names the file, the
record (numbered from 1), its line, its id and the field (indices in field paths count from 0).

Writers go through a temporary file renamed into place, so a crash never leaves half a file;
:class:`RecordWriter` appends JSON lines for jobs that resume where a killed run stopped.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Optional, TypeVar, Union

from pydantic import ValidationError

from blender_serve.data.records import MixRecord
from blender_serve.errors import InvalidInputError

__all__ = [
    "CHUNK_SIZE", "DataFormatError", "ReadStats", "RecordWriter", "existing_ids", "iter_objects",
    "iter_records", "read_records", "write_objects", "write_records",
]

logger = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

CHUNK_SIZE = 1 << 16  # characters per read of a JSON array; read at call time, so tests can patch it
_KEPT_ERRORS = 20
_JSON_SPACE = re.compile(r"[^ \t\n\r]")  # the first non-whitespace character, by JSON's definition
_TAIL_MARGIN = 16  # a decode error this close to the buffer's end may only mean "read more"


class DataFormatError(InvalidInputError):
    """A data file that cannot be read as expected; says where (file, record, line, id, field) and why.

    Example message: ``data/test.jsonl, record 17 (line 17, id 'unified_chip2/69962'), field
    candidates[2].text: Input should be a valid string``.
    """

    def __init__(self, problem: str, *, path: PathLike, record: Optional[int] = None, line: Optional[int] = None,
                 record_id: Optional[str] = None, field: Optional[str] = None):
        self.problem, self.path, self.record, self.line = problem, str(path), record, line
        self.record_id, self.field = record_id, field
        where = [self.path]
        if record is not None:
            details = ([f"line {line}"] if line is not None else []) + ([f"id {record_id!r}"] if record_id is not None else [])
            where.append(f"record {record}" + (f" ({', '.join(details)})" if details else ""))
        elif line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {problem}")


@dataclass
class ReadStats:
    """What a reader did: records yielded (``read``), records skipped, and the first 20 reasons."""

    read: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def _skip(self, error: Exception) -> None:
        self.skipped += 1
        if len(self.errors) < _KEPT_ERRORS:
            self.errors.append(str(error))


class _FieldProblem(ValueError):
    """A parse function's complaint about one field, which the reader turns into a DataFormatError."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field


# ---- reading: the low level, shared by every format -------------------------------------------

def _open_text(path: PathLike, mode: str = "r", gz: Optional[bool] = None) -> IO[str]:
    """A text handle, through gzip when the name ends with .gz (reads skip a UTF-8 BOM)."""
    encoding = "utf-8-sig" if mode == "r" else "utf-8"
    if str(path).endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode + "t", encoding=encoding)  # type: ignore[return-value]
    return open(path, mode, encoding=encoding)


class _ArrayScanner:
    """The elements of a JSON array, decoded one at a time from a stream read in chunks."""

    def __init__(self, fh: IO[str], head: str, path: PathLike, line: int, chunk_size: int):
        self.fh, self.buf, self.pos, self.path, self.chunk = fh, head, 0, path, chunk_size
        self.eof, self.line, self.line_pos = False, line, 0  # line is the line number at buf[line_pos]
        self.decoder = json.JSONDecoder()

    def _line_at(self, pos: int) -> int:
        self.line += self.buf.count("\n", self.line_pos, pos)
        self.line_pos = pos
        return self.line

    def _fill(self, size: int) -> bool:
        if self.eof:
            return False
        if self.pos > self.chunk:  # drop what is decoded, so memory stays about one record
            self._line_at(self.pos)
            self.buf, self.line_pos, self.pos = self.buf[self.pos:], 0, 0
        data = self.fh.read(size)
        self.eof = not data
        self.buf += data
        return bool(data)

    def _next_char(self) -> str:
        while True:
            found = _JSON_SPACE.search(self.buf, self.pos)
            if found:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self._fill(self.chunk):
                return ""

    def _error(self, problem: str, record: int, pos: Optional[int] = None) -> DataFormatError:
        line = self._line_at(max(self.pos if pos is None else pos, self.line_pos))
        return DataFormatError(problem, path=self.path, record=record, line=line)

    def _decode(self, record: int) -> Any:
        size = self.chunk
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
                # a number near the buffer's end may go on in the next chunk ("1.5e" | "-07")
                if self.eof or isinstance(value, (dict, list, str)) or end < len(self.buf) - _TAIL_MARGIN:
                    self.pos = end
                    return value
            except json.JSONDecodeError as exc:
                truncated = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - _TAIL_MARGIN
                if self.eof or not truncated:
                    raise self._error(f"invalid JSON: {exc.msg}", record, exc.pos) from None
            size = max(size, len(self.buf) - self.pos)  # grow geometrically: a huge record costs O(size)
            self._fill(size)

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        self.pos += 1  # the opening '['
        record, char = 0, self._next_char()
        if char == "]":
            self._expect_end(record)
            return
        while True:
            if char == "":
                raise self._error("the file ends inside the array (no closing ']')", record + 1)
            record += 1
            line = self._line_at(self.pos)
            yield record, line, self._decode(record)
            char = self._next_char()
            if char == "]":
                self._expect_end(record)
                return
            if char != ",":
                problem = "the file ends inside the array" if char == "" else f"expected ',' or ']', found {char!r}"
                raise self._error(problem + " after this record", record)
            self.pos += 1
            char = self._next_char()
            if char == "]":
                raise self._error("trailing comma before ']'", record)

    def _expect_end(self, record: int) -> None:
        self.pos += 1
        if self._next_char():
            raise self._error("unexpected data after the array's closing ']'", record)


def _iter_lines(first: str, fh: IO[str], first_line: int, path: PathLike) -> Iterator[tuple[int, int, Any]]:
    """(record, line, value) per non-blank line; a syntax error is yielded, not raised, to be skippable."""
    record = 0
    for line, text in enumerate(chain([first], fh), start=first_line):
        if not text.strip():
            continue
        record += 1
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            problem = f"invalid JSON: {exc.msg} (column {exc.colno}); JSON lines need one whole object per line"
            value = DataFormatError(problem, path=path, record=record, line=line)
        yield record, line, value


def _iter_values(path: PathLike) -> Iterator[tuple[int, int, Any]]:
    """(record number, line, decoded value) for each top-level value of a JSON array or JSON-lines file."""
    chunk = CHUNK_SIZE
    with _open_text(path) as fh:
        line = 1
        while True:
            piece = fh.readline(chunk)  # bounded: a one-line array must not be read whole
            if not piece:
                return  # empty, or only whitespace
            if piece.strip(" \t\r\n"):
                break
            line += piece.endswith("\n")
        head = piece.lstrip(" \t\r\n")  # a line holds one newline, at its end: the line number is right
        if head[0] == "[":
            yield from _ArrayScanner(fh, head, path, line, chunk)
        elif head[0] == "{":
            if not head.endswith("\n"):
                head += fh.readline()
            yield from _iter_lines(head, fh, line, path)
        else:
            raise DataFormatError(f"starts with {head[0]!r}: expected a JSON array ('[') or JSON lines ('{{')",
                                  path=path, line=line)


def _field_path(loc: tuple) -> Optional[str]:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).isidentifier():
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out or None


def _problem(exc: Exception, where: dict) -> DataFormatError:
    if isinstance(exc, ValidationError):
        errors = [(_field_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        problem = errors[0][1] + "".join(f"; also field {f}: {m}" if f else f"; also {m}" for f, m in errors[1:])
        return DataFormatError(problem, field=errors[0][0], **where)
    return DataFormatError(str(exc), field=getattr(exc, "field", None), **where)


def iter_objects(path: PathLike, parse: Optional[Callable[[dict, int], T]] = None, *, skip_bad: bool = False,
                 stats: Optional[ReadStats] = None) -> Iterator[Any]:
    """Each top-level JSON object of a JSON-array or JSON-lines file, streamed, passed through ``parse``.

    Args:
        path: the file; ``*.gz`` is read through gzip.
        parse: ``parse(obj, index)`` (index counts objects from 0) turns an object into what is
            yielded; its pydantic ``ValidationError`` or ``ValueError`` becomes a DataFormatError
            naming the field. ``None`` yields the dicts themselves.
        skip_bad: skip records that fail (not a JSON object, fail ``parse``, or a bad JSON line)
            and count them in ``stats``. A JSON *syntax* error inside an array is raised even so:
            where the next element starts cannot be known after one.
        stats: a :class:`ReadStats` to fill in.

    Example:
        >>> for obj in iter_objects("pairs.jsonl"): print(obj["prompt"])
    """
    stats = stats if stats is not None else ReadStats()
    skipped_before = stats.skipped
    for record, line, value in _iter_values(path):
        record_id = value.get("id") if isinstance(value, dict) else None
        where = dict(path=path, record=record, line=line, record_id=None if record_id is None else str(record_id))
        try:
            if isinstance(value, DataFormatError):
                raise value
            if not isinstance(value, dict):
                raise DataFormatError(f"expected a JSON object, found {type(value).__name__}", **where)
            result = value if parse is None else parse(value, record - 1)
        except DataFormatError as exc:
            error = exc
        except (ValidationError, ValueError) as exc:
            error = _problem(exc, where)
            error.__cause__ = exc
        else:
            stats.read += 1
            yield result
            continue
        if not skip_bad:
            raise error
        stats._skip(error)
    if stats.skipped > skipped_before:
        logger.warning("%s: skipped %d malformed records; first: %s", path, stats.skipped - skipped_before,
                       stats.errors[0] if stats.errors else "?")


def iter_records(path: PathLike, *, skip_bad: bool = False, stats: Optional[ReadStats] = None,
                 allow_no_candidates: bool = True) -> Iterator[MixRecord]:
    """The :class:`MixRecord` s of a MixInstruct file (JSON array or JSON lines, maybe gzipped), streamed.

    ``skip_bad`` skips malformed records, counting them in ``stats``; a JSON syntax error inside a
    JSON array cannot be skipped (see :func:`iter_objects`) and is raised. With
    ``allow_no_candidates=False`` a record without candidates is malformed too.

    Example:
        >>> stats = ReadStats()
        >>> n = sum(1 for r in iter_records("test_data_prepared.json", skip_bad=True, stats=stats))
        >>> stats.read, stats.skipped, stats.errors[:1]
    """
    def parse(obj: dict, index: int) -> MixRecord:
        record = MixRecord.model_validate(obj)
        if not allow_no_candidates and not record.candidates:
            raise _FieldProblem("candidates", "the record has no candidates")
        return record

    return iter_objects(path, parse, skip_bad=skip_bad, stats=stats)


def read_records(path: PathLike, **kwargs: Any) -> list[MixRecord]:
    """All records of a file as a list; keyword arguments as :func:`iter_records`.

    Example: ``records = read_records("data/mix_test.jsonl.gz")``
    """
    return list(iter_records(path, **kwargs))


# ---- writing --------------------------------------------------------------------------------

def _format_of(path: PathLike, format: Optional[str]) -> str:
    if format is not None:
        if format not in ("json", "jsonl"):
            raise InvalidInputError(f"unknown data file format {format!r}; use 'json' (an array) or 'jsonl' (lines)")
        return format
    name = str(path).removesuffix(".gz")
    for suffix in ("jsonl", "json"):
        if name.endswith("." + suffix):
            return suffix
    raise InvalidInputError(f"cannot tell the format of {str(path)!r} from its name; name it *.json or *.jsonl "
                            "(optionally + .gz) or pass format='json' or 'jsonl'")


def write_objects(path: PathLike, objects: Iterable[dict], *, format: Optional[str] = None) -> int:
    """Write JSON objects as an array (``.json``) or lines (``.jsonl``), gzipped for ``.gz``; returns the count.

    UTF-8, non-ASCII text as is. The objects go to a temporary file beside ``path``, renamed into
    place at the end, so readers never see half a file and ``path`` may also be the input.
    Example: ``write_objects("pairs.jsonl", ({"prompt": p, "chosen": c, "rejected": r} for ...))``
    """
    path = Path(path)
    fmt = _format_of(path, format)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    count = 0
    try:
        with _open_text(tmp, "x", gz=str(path).endswith(".gz")) as fh:
            fh.write("[" if fmt == "json" else "")
            for obj in objects:
                text = json.dumps(obj, ensure_ascii=False)
                fh.write((",\n" if count else "\n") + text if fmt == "json" else text + "\n")
                count += 1
            fh.write(("\n]\n" if count else "]\n") if fmt == "json" else "")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def write_records(path: PathLike, records: Iterable[Union[MixRecord, dict]], *, format: Optional[str] = None) -> int:
    """Write records in the SPEC's shape (see :meth:`MixRecord.to_dict`); format as :func:`write_objects`.

    Example: ``write_records("out/test.jsonl.gz", read_records("test.json"))``
    """
    return write_objects(path, (_as_record(r).to_dict() for r in records), format=format)


def _as_record(value: Union[MixRecord, dict]) -> MixRecord:
    return value if isinstance(value, MixRecord) else MixRecord.model_validate(value)


# ---- appending, for resumable jobs ----------------------------------------------------------

def existing_ids(path: PathLike) -> set[str]:
    """The ids already in a JSON-lines file (empty if there is no file), ignoring a partial last line.

    Example: ``done = existing_ids("out.jsonl"); todo = [r for r in records if r.id not in done]``
    """
    if not os.path.exists(path):
        return set()
    ids: set[str] = set()
    with _open_text(path) as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                if not text.endswith("\n"):  # the last line, cut short by a killed writer
                    break
                raise DataFormatError(f"invalid JSON: {exc.msg}", path=path, line=line) from None
            if not isinstance(value, dict) or value.get("id") is None:
                raise DataFormatError("no 'id'", path=path, line=line, field="id")
            ids.add(str(value["id"]))
    return ids


def _repair_tail(path: Path) -> None:
    """End the file with a newline: keep a last line that is whole JSON, cut one a killed writer left half-done."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        start = end
        while start > 0:  # find the last newline, reading backwards in blocks
            step = min(start, 1 << 16)
            fh.seek(start - step)
            block = fh.read(step)
            if b"\n" in block:
                start = start - step + block.rindex(b"\n") + 1
                break
            start -= step
        if start == end:
            return
        fh.seek(start)
        tail = fh.read()
        try:
            whole = isinstance(json.loads(tail.decode("utf-8")), dict)
        except (UnicodeDecodeError, json.JSONDecodeError):
            whole = False
        if whole:
            fh.write(b"\n")
        else:
            logger.warning("%s: dropping a partial last line (%d bytes) left by an interrupted writer", path, end - start)
            fh.truncate(start)


class RecordWriter:
    """Appends records to a JSON-lines file, one flushed line per record, for jobs that resume.

    Opening repairs the file's end: a partial last line (a killed run's) is cut away, so the next
    record starts on a fresh line. ``.gz`` is refused: a compressed file cannot be cut safely.

    Example:
        >>> done = RecordWriter.existing_ids("ranked.jsonl")
        >>> with RecordWriter("ranked.jsonl") as out:
        ...     for record in iter_records("test.json"):
        ...         if record.id not in done:
        ...             out.write(rank(record))
    """

    existing_ids = staticmethod(existing_ids)

    def __init__(self, path: PathLike):
        self.path = Path(path)
        if str(self.path).endswith(".gz"):
            raise InvalidInputError(f"RecordWriter appends plain JSON lines; {str(path)!r} ends with .gz")
        self._fh: Optional[IO[str]] = None
        self.written = 0

    def __enter__(self) -> "RecordWriter":
        _repair_tail(self.path)
        self._fh = open(self.path, "a", encoding="utf-8", newline="\n")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def write(self, record: Union[MixRecord, dict]) -> None:
        """Append one record (a MixRecord, or a dict written as is) as one line, and flush."""
        if self._fh is None:
            raise InvalidInputError("RecordWriter is not open; use it as `with RecordWriter(path) as out:`")
        data = record.to_dict() if isinstance(record, MixRecord) else record
        self._fh.write(json.dumps(data, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.written += 1
