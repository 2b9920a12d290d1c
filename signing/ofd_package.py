"""OFD packages (GB/T 33190-2016) as ZIP files: safe reading, deterministic writing.

Shared by :mod:`signing.ofd_writer`, :mod:`signing.ofd_seal` and
:mod:`signing.ofd_verify`. An OFD handed to the hub is untrusted input, so
:func:`read_package` refuses (with :class:`OfdPackageError`) entry names that
could escape a directory when extracted (absolute paths, ``..``, backslashes,
drive letters), duplicates, encrypted entries, and packages whose entries would
expand past fixed limits (ZIP bombs). :func:`write_package` is the one way
packages are written: entries in the given order, a fixed timestamp and fixed
attributes, so equal content gives equal bytes.

OFD paths inside XML (``BaseLoc``, ``FileRef``...) are either absolute from
the package root (``/Doc_0/Document.xml``) or relative to the directory of
the XML file that holds them; :func:`resolve` turns both into a package entry
name. This module does no network or disk I/O.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Mapping

from lxml import etree

from signing.errors import SigningError

NS = "http://www.ofdspec.org/2016"
"""The OFD namespace of GB/T 33190-2016 (prefix ``ofd``)."""
NSMAP = {"ofd": NS}
OFD_ENTRY = "OFD.xml"

MAX_ENTRIES = 2_000
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_STORED_SUFFIXES = (".ttf", ".otf", ".png", ".jpg", ".jpeg", ".esl", ".dat")
"""Already compressed or binary: deflating them costs time and saves little."""


class OfdPackageError(SigningError):
    """The bytes are not a safe, readable OFD package (``reason`` says why)."""

    def __init__(self, message: str, *, reason: str, entry: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.entry = entry


def q(tag: str) -> str:
    """The Clark name ``{ns}tag`` of an OFD element."""
    return f"{{{NS}}}{tag}"


def is_ofd(data: bytes) -> bool:
    """Whether ``data`` is a ZIP file with an ``OFD.xml`` entry (cheap, no full read)."""
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return OFD_ENTRY in archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False


def _unsafe_name(name: str) -> str | None:
    if not name or name.endswith("/"):
        return None  # directory entries are skipped, not refused
    if name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return "absolute path, backslash or NUL in the entry name"
    if len(name) > 1 and name[1] == ":":
        return "drive letter in the entry name"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "empty, '.' or '..' path segment in the entry name"
    return None


def read_package(data: bytes) -> dict[str, bytes]:
    """Every file entry of an OFD package by name, after the safety checks above."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise OfdPackageError(f"not a ZIP package: {exc}", reason="not_zip") from exc
    entries: dict[str, bytes] = {}
    total = 0
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise OfdPackageError(f"{len(infos)} entries (limit {MAX_ENTRIES})", reason="too_large")
        for info in infos:
            name = info.filename
            if info.is_dir():
                if _unsafe_name(name.rstrip("/") or "x") is not None:
                    raise OfdPackageError(f"unsafe entry {name!r}", reason="unsafe", entry=name)
                continue
            why = _unsafe_name(name)
            if why is not None:
                raise OfdPackageError(f"unsafe entry {name!r}: {why}", reason="unsafe", entry=name)
            if name in entries:
                raise OfdPackageError(f"duplicate entry {name!r}", reason="unsafe", entry=name)
            if info.flag_bits & 0x1:
                raise OfdPackageError(f"encrypted entry {name!r}", reason="unsafe", entry=name)
            total += info.file_size
            if info.file_size > MAX_ENTRY_BYTES or total > MAX_TOTAL_BYTES:
                raise OfdPackageError(f"entry {name!r} too large", reason="too_large", entry=name)
            try:
                with archive.open(info) as handle:
                    body = handle.read(MAX_ENTRY_BYTES + 1)
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
                raise OfdPackageError(
                    f"entry {name!r} unreadable: {exc}", reason="corrupt", entry=name
                ) from exc
            if len(body) > MAX_ENTRY_BYTES:
                raise OfdPackageError(f"entry {name!r} too large", reason="too_large", entry=name)
            entries[name] = body
    if OFD_ENTRY not in entries:
        raise OfdPackageError("no OFD.xml at the package root", reason="not_ofd")
    return entries


def write_package(entries: Mapping[str, bytes]) -> bytes:
    """A ZIP of ``entries`` in their order, with fixed timestamps and attributes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in entries.items():
            if _unsafe_name(name) is not None:
                raise OfdPackageError(f"refusing to write entry {name!r}", reason="unsafe")
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = 3  # Unix, so external_attr below means rw-r--r--
            info.external_attr = 0o100644 << 16
            stored = name.lower().endswith(_STORED_SUFFIXES)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, body, compresslevel=6)
    return buffer.getvalue()


def resolve(location: str, base_entry: str) -> str:
    """The package entry named by ``location`` as written in ``base_entry``.

    Raises :class:`OfdPackageError` when the location escapes the package.
    """
    location = location.strip()
    if not location:
        raise OfdPackageError(f"empty location in {base_entry}", reason="bad_location")
    if location.startswith("/"):
        joined = location.lstrip("/")
    else:
        joined = posixpath.join(posixpath.dirname(base_entry), location)
    normal = posixpath.normpath(joined)
    if normal.startswith("../") or normal in ("..", ".") or _unsafe_name(normal) is not None:
        raise OfdPackageError(
            f"location {location!r} in {base_entry} leaves the package", reason="bad_location"
        )
    return normal


def parse_xml(body: bytes, entry: str) -> etree._Element:
    """Parse an OFD XML part without network access, DTDs or entity expansion."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise OfdPackageError(f"{entry}: not well-formed XML: {exc}", reason="bad_xml") from exc
    if root is None:
        raise OfdPackageError(f"{entry}: empty XML", reason="bad_xml")
    return root


def to_xml(root: etree._Element) -> bytes:
    """Serialize an OFD XML part: UTF-8, with declaration, no pretty-printing."""
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True))


__all__ = [
    "NS",
    "NSMAP",
    "OFD_ENTRY",
    "OfdPackageError",
    "is_ofd",
    "parse_xml",
    "q",
    "read_package",
    "resolve",
    "to_xml",
    "write_package",
]
