"""File-drop source: XML / CSV / XLSX files a department drops into a folder.

:class:`FileDropSource` implements :class:`connectors.source.Source`. Files
matching ``pattern`` are read in name order (then modification time), each in
batches of at most ``batch_size`` records; a batch never spans two files. The
batch that finishes a file carries it in its context, and ``commit`` moves the
file to the processed folder (``os.replace``) — only then.

Cursor (the watermark the hub stores), a JSON object::

    {"file": "<name>", "sha256": "<hex of the file>", "row": n}

meaning records 1..n of that file are in the hub store. A resumed run starts
that file at record n+1; if the file's bytes changed (other hash) it starts
over. A cursor with ``row`` equal to the file's record count means only the
move is pending: ``read`` moves the file and goes on.

Each file is checked whole before any of its records is yielded (hash, decoding,
well-formedness, XSD), so a bad file fails the run with :class:`SourceRejected`
naming file, line/column and what to fix, leaves the file in place and the
watermark where it was; the other sources keep running.

XML is parsed hardened (:mod:`connectors.safe_xml`): a DOCTYPE (hence any ENTITY
declaration: external entities, entity expansion) is refused by a scan of the
prolog before parsing, and the parser runs without network, DTD loading, entity
resolution or ``huge_tree``; file and record sizes are capped. Memory stays flat: XML is
streamed with ``iterparse`` and cleared, CSV read row by row, XLSX opened
read-only. Drop files atomically (write elsewhere, then rename into the folder).

Must not import Airflow, log record contents, or move a file before its commit.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

import openpyxl
from lxml import etree
from openpyxl.utils.exceptions import InvalidFileException

from connectors.errors import SourceRejected, SourceUnavailable
from connectors.safe_xml import (
    PROLOG_BYTES,
    RecordPath,
    XmlFileError,
    iter_records,
    load_xsd,
    locate_undecodable,
    validate,
)
from connectors.source import SourceBatch, SourceRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FileDropSpec:
    """Where a department drops files and how to read them."""

    name: str
    """Source id, used in every message (``<department>.<source>``)."""
    folder: str | Path
    """Drop folder."""
    pattern: str = "*.xml"
    """Glob of the files to read, within the folder (not recursive)."""
    format: Literal["xml", "csv", "xlsx"] = "xml"
    encoding: str = "utf-8"
    """Declared text encoding (``gbk``); XML files with an encoding declaration use theirs."""
    processed_dir: str | Path = "processed"
    """Where committed files go; relative to ``folder`` unless absolute."""
    record_tag: str = "Record"
    """XML record elements: a tag (``Record`` = ``//Record``) or a path, ``//Parent/Record``
    or ``/Root/Records/Record``; local names, namespaces ignored."""
    key_field: str | None = None
    """Field holding the record key (``ZSBH``); ``<file>:<n>`` when absent or empty."""
    version_field: str | None = None
    """Field holding the record version; ``<file>:<n>`` when None."""
    xsd: str | Path | None = None
    """XSD every XML file must satisfy (path)."""
    sheet: str | None = None
    """XLSX sheet name; the first sheet when None."""
    delimiter: str = ","
    """CSV field delimiter."""
    max_file_bytes: int = 512 * 1024 * 1024
    max_record_bytes: int = 1024 * 1024
    """Cap on the text of one XML record (tags, attributes, text)."""
    batch_size: int = 200


@dataclass(frozen=True)
class _Cursor:
    file: str
    sha256: str
    row: int


class FileDropSource:
    """Reader of one drop folder. See the module docstring for order and cursor."""

    def __init__(self, spec: FileDropSpec) -> None:
        self.spec = spec
        self.name = spec.name
        try:
            self._codec = codecs.lookup(spec.encoding).name
        except LookupError as exc:
            raise SourceRejected(
                f"source {spec.name}: unknown encoding {spec.encoding!r} in the source spec; "
                "use a Python codec name such as gbk, gb18030 or utf-8"
            ) from exc
        try:
            self._records = RecordPath(spec.record_tag)
        except ValueError as exc:
            raise SourceRejected(
                f"source {spec.name}: empty record_tag in the source spec"
            ) from exc
        self._schema: etree.XMLSchema | None = None

    # -- the Source protocol ---------------------------------------------------------

    def read(self, cursor: str | None) -> Iterator[SourceBatch]:
        """Yield batches of every pending file, resuming the cursor's file where it stopped."""
        cur = self._parse(cursor)
        folder = Path(self.spec.folder)
        if not folder.is_dir():
            raise SourceUnavailable(
                f"source {self.name}: drop folder {folder} does not exist or is not mounted; "
                "check the share, then re-run"
            )
        files = sorted(
            (p for p in folder.glob(self.spec.pattern) if p.is_file()),
            key=lambda p: (p.name, p.stat().st_mtime_ns),
        )
        log.info("source %s: %d files pending in %s", self.name, len(files), folder)
        for path in files:
            yield from self._read_file(path, cur)

    def commit(self, batch: SourceBatch) -> None:
        """Move the file a batch finished to the processed folder."""
        if "move" in batch.context:
            self._move(Path(batch.context["move"]), batch.context["sha256"])

    def close(self) -> None:
        """Nothing held between calls."""

    # -- one file --------------------------------------------------------------------

    def _read_file(self, path: Path, cur: _Cursor | None) -> Iterator[SourceBatch]:
        s = self.spec
        if path.is_symlink():  # it would read (and move) a file from outside the folder
            raise self._reject(path, "", "is a symbolic link", "drop the file itself")
        size = path.stat().st_size
        if size > s.max_file_bytes:
            raise SourceRejected(
                f"source {self.name}: file {path.name} has {size} bytes, above max_file_bytes "
                f"{s.max_file_bytes}; ask the department to split it or raise the limit"
            )
        sha = _sha256(path)
        total = sum(1 for _ in self._rows(path, check=True))
        same = cur is not None and cur.file == path.name and cur.sha256 == sha
        start = cur.row if cur is not None and same else 0
        log.info(
            "source %s: file %s checked: %d records, %d bytes, resuming after record %d",
            self.name,
            path.name,
            total,
            size,
            start,
        )
        if same and start >= total:
            self._move(path, sha)  # every record committed; only the move was pending
            return
        if total == 0:
            yield self._batch(path, sha, 0, [], last=True)
            return
        records: list[SourceRecord] = []
        n = 0
        for n, payload in enumerate(self._rows(path), start=1):
            if n <= start:
                continue
            if n > total:
                break
            records.append(self._record(path.name, n, payload))
            if len(records) == s.batch_size or n == total:
                yield self._batch(path, sha, n, records, last=n == total)
                records = []
        if n != total:
            raise SourceUnavailable(
                f"source {self.name}: file {path.name} changed while being read ({total} "
                f"records, then {n}); the department must drop files atomically (write "
                "elsewhere, then rename into the folder); re-run"
            )

    def _batch(
        self, path: Path, sha: str, row: int, records: list[SourceRecord], *, last: bool
    ) -> SourceBatch:
        cursor = json.dumps({"file": path.name, "sha256": sha, "row": row}, ensure_ascii=False)
        context: dict[str, Any] = {"file": path.name}
        if last:
            context.update(move=str(path), sha256=sha)
        return SourceBatch(records=records, cursor=cursor, context=context)

    def _record(self, file: str, n: int, payload: dict[str, Any]) -> SourceRecord:
        s = self.spec
        fallback = f"{file}:{n}"
        key = payload.get(s.key_field) if s.key_field else None
        version = payload.get(s.version_field) if s.version_field else None
        return SourceRecord(
            key=_scalar(key) or fallback, version=_scalar(version) or fallback, payload=payload
        )

    def _move(self, path: Path, sha: str) -> None:
        target_dir = Path(self.spec.folder) / self.spec.processed_dir
        if target_dir.is_symlink():  # a link planted in the drop folder: files would leave it
            raise SourceRejected(
                f"source {self.name}: processed folder {target_dir} is a symbolic link; "
                "remove it (an absolute processed_dir in the spec puts the folder elsewhere)"
            )
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / path.name
        if target.exists():  # a file of that name was processed before: keep both
            target = target_dir / f"{path.stem}.{sha[:12]}{path.suffix}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            log.warning("source %s: file %s already moved", self.name, path.name)
            return
        log.info("source %s: file %s moved to %s", self.name, path.name, target_dir)

    def _parse(self, cursor: str | None) -> _Cursor | None:
        if not cursor:
            return None
        try:
            data = json.loads(cursor)
            return _Cursor(str(data["file"]), str(data["sha256"]), int(data["row"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise SourceRejected(
                f"source {self.name}: stored cursor {cursor[:80]!r} is not a file cursor "
                '{"file", "sha256", "row"}; reset the source\'s watermark'
            ) from exc

    def _rows(self, path: Path, *, check: bool = False) -> Iterator[dict[str, Any]]:
        """Records of a file; ``check``: the whole-file check pass (XSD, size caps)."""
        if self.spec.format == "xml":
            return self._xml_rows(path, check=check)
        if self.spec.format == "csv":
            return self._csv_rows(path)
        return self._xlsx_rows(path)

    def _reject(self, path: Path, where: str, what: str, fix: str) -> SourceRejected:
        return SourceRejected(
            f"source {self.name}: file {path.name}{where}: {what}; {fix} "
            "(the file stays in the drop folder, the watermark is unchanged)"
        )

    # -- XML -------------------------------------------------------------------------

    def _xml_rows(self, path: Path, *, check: bool) -> Iterator[Any]:
        try:
            yield from iter_records(
                path,
                self._records,
                codec=self._codec,
                max_record_bytes=self.spec.max_record_bytes if check else None,
                flatten=not check,
            )
            schema = self._xsd() if check else None
            if schema is not None:  # a separate pass: only well-formed files get here
                validate(path, schema, self._codec)
        except XmlFileError as exc:
            what = exc.what.replace("the XSD", f"the XSD {self.spec.xsd}")
            raise self._reject(path, exc.where, what, exc.fix) from exc

    def _xsd(self) -> etree.XMLSchema | None:
        if self.spec.xsd is not None and self._schema is None:
            try:
                self._schema = load_xsd(Path(self.spec.xsd))
            except XmlFileError as exc:
                raise SourceRejected(
                    f"source {self.name}: XSD {self.spec.xsd}{exc.where}: {exc.what}; {exc.fix}"
                ) from exc
        return self._schema

    # -- CSV / XLSX ------------------------------------------------------------------

    def _csv_rows(self, path: Path) -> Iterator[dict[str, Any]]:
        enc = "utf-8-sig" if self._codec == "utf-8" else self._codec
        with path.open(encoding=enc, newline="", errors="strict") as fh:
            reader = csv.reader(fh, delimiter=self.spec.delimiter)
            try:
                header = next(reader, None)
                if header is None:
                    return
                header[0] = header[0].lstrip("\ufeff")
                self._check_header(path, header)
                for row in reader:
                    if not row:
                        continue
                    if len(row) != len(header):
                        raise self._reject(
                            path,
                            f" line {reader.line_num}",
                            f"{len(row)} fields where the header has {len(header)}",
                            "quote fields that contain the delimiter or a line break",
                        )
                    yield dict(zip(header, row, strict=True))
            except UnicodeDecodeError as exc:
                line, col, raw = locate_undecodable(path, enc) or (0, 0, "")
                raise self._reject(
                    path,
                    f" line {line}, column {col}",
                    f"bytes 0x{raw} do not decode as {enc}",
                    f"ask the department to re-export it in {enc}, or fix the spec's encoding",
                ) from exc
            except csv.Error as exc:
                raise self._reject(
                    path, f" line {reader.line_num}", f"malformed CSV ({exc})", _RESEND
                ) from exc

    def _xlsx_rows(self, path: Path) -> Iterator[dict[str, Any]]:
        self._check_workbook(path)
        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, SyntaxError) as exc:
            raise self._reject(
                path, "", f"is not a readable XLSX workbook ({exc})", _RESEND
            ) from exc
        try:
            if self.spec.sheet is None:
                ws = wb.worksheets[0]
            elif self.spec.sheet in wb.sheetnames:
                ws = wb[self.spec.sheet]
            else:
                raise self._reject(
                    path,
                    "",
                    f"has no sheet {self.spec.sheet!r} (sheets: {wb.sheetnames})",
                    "fix sheet in the source spec or ask the department",
                )
            rows = ws.iter_rows(values_only=True)
            first = next(rows, None)
            if first is None:
                return
            cells = list(first)
            while cells and cells[-1] is None:
                cells.pop()
            header = ["" if c is None else str(c).strip() for c in cells]
            self._check_header(path, header)
            for n, row in enumerate(rows, start=2):
                if all(v is None for v in row):
                    continue
                if any(v is not None for v in row[len(header) :]):
                    raise self._reject(
                        path,
                        f" row {n}",
                        "values right of the last header column",
                        "add a header for them or remove them",
                    )
                yield {h: _cell(v) for h, v in zip(header, row, strict=False)}
        except (zipfile.BadZipFile, KeyError, OSError, SyntaxError, ValueError) as exc:
            raise self._reject(
                path, "", f"is not a readable XLSX workbook ({exc})", _RESEND
            ) from exc
        finally:
            wb.close()

    def _check_workbook(self, path: Path) -> None:
        """Refuse a zip bomb (parts inflating beyond ``max_file_bytes``) and XML parts with
        a DOCTYPE (entity expansion, external entities) before openpyxl parses anything."""
        try:
            with zipfile.ZipFile(path) as zf:
                members = zf.infolist()
                inflated = sum(m.file_size for m in members)
                if inflated > self.spec.max_file_bytes:
                    raise self._reject(
                        path, "", f"inflates to {inflated} bytes, above max_file_bytes "
                        f"{self.spec.max_file_bytes} (a zip bomb?)", _RESEND
                    )  # fmt: skip
                for m in members:
                    if m.filename.endswith((".xml", ".rels")):
                        with zf.open(m) as fh:
                            head = fh.read(PROLOG_BYTES).replace(b"\x00", b"").upper()
                        if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                            raise self._reject(path, f" part {m.filename}",
                                               "has a DOCTYPE", _NO_DOCTYPE_XLSX)  # fmt: skip
        except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:
            raise self._reject(
                path, "", f"is not a readable XLSX workbook ({exc})", _RESEND
            ) from exc

    def _check_header(self, path: Path, header: list[str]) -> None:
        if any(not h.strip() for h in header) or len(set(header)) != len(header):
            raise self._reject(path, " header", f"empty or repeated column names {header}", _RESEND)


_RESEND = "ask the department to correct and re-send it"
_NO_DOCTYPE_XLSX = (
    "DTDs and entity declarations are refused (external entities, entity expansion); "
    "ask the department to save the workbook again from a spreadsheet program"
)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, list | dict):
        return ""
    return str(value).strip()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()
