"""Hardened, streaming reading of XML files that come from outside (department drops).

- :func:`check_prolog` refuses a DOCTYPE — hence every ENTITY declaration, the
  vehicle of external-entity (XXE) and entity-expansion ("billion laughs")
  attacks — by scanning the prolog *before* the parser sees the document.
- :func:`parser_options` configures lxml without network, DTD loading, entity
  resolution or ``huge_tree`` (defence in depth behind the scan).
- :func:`iter_records` streams record elements with ``iterparse`` and frees
  every finished element, so memory stays flat whatever the file size; it caps
  the size of one record; :func:`validate` streams a file through an XSD.
- Failures raise :class:`XmlFileError` with line/column when known and what to
  fix; callers add the source and file names. XSD errors get their line numbers
  from a second, finer pass (streaming validation in libxml2 reports none).

Must not resolve anything over the network, expand entities, or keep a whole
document in memory.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

PROLOG_BYTES = 64 * 1024
_DECL_ENCODING = re.compile(r"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z][\w.:-]*)["']""")
_SCHEMA_REFS = ("include", "import", "redefine", "override")
_NO_DOCTYPE = (
    "DTDs and entity declarations are refused (external entities, entity expansion); "
    "ask the department to send the file without a DOCTYPE"
)
_TRUNCATED = "the file is truncated; ask the department to re-send the complete file"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class XmlFileError(Exception):
    """A file cannot be read: ``where`` (`` line L, column C`` or empty), ``what``, ``fix``."""

    def __init__(self, where: str, what: str, fix: str) -> None:
        super().__init__(f"{where.strip()}: {what}; {fix}")
        self.where, self.what, self.fix = where, what, fix


def parser_options(encoding: str | None) -> dict[str, Any]:
    """lxml parser settings for untrusted input (``encoding`` forces one; None: the file's)."""
    return {
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "dtd_validation": False,
        "huge_tree": False,
        "remove_comments": True,
        "remove_pis": True,
        "encoding": encoding,
    }


def check_prolog(path: Path, codec: str) -> tuple[str | None, str]:
    """Refuse a DOCTYPE before parsing. Returns the encoding to force on the parser
    (None: the file's own, from its BOM or XML declaration) and the encoding in effect;
    ``codec`` is the declared encoding used when the file names none."""
    with path.open("rb") as fh:
        head = fh.read(PROLOG_BYTES)
        whole = len(head) < PROLOG_BYTES or not fh.read(1)
    override: str | None = codec
    for bom, enc in _BOMS:
        if head.startswith(bom):
            text, override, effective = head[len(bom) :].decode(enc, "replace"), None, enc
            break
    else:
        if head.startswith((b"<\x00?\x00", b"\x00<\x00?")):
            text, override, effective = head.decode("utf-16", "replace"), None, "utf-16"
        else:
            text, effective = head.decode("latin-1"), codec  # markup is ASCII here
            m = _DECL_ENCODING.match(text)
            if m:  # the XML declaration names the encoding: honour it
                override, effective = None, m.group(1)
    i = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if text.startswith("<?", i):
            end, close = text.find("?>", i), 2
        elif text.startswith("<!--", i):
            end, close = text.find("-->", i), 3
        elif text.startswith("<!", i):
            line = text.count("\n", 0, i) + 1
            raise XmlFileError(
                f" line {line}", f"has a <!{text[i + 2 : i + 9]} declaration", _NO_DOCTYPE
            )
        else:
            return override, effective  # the root element (or text the parser reports)
        if end < 0:
            if whole:
                return override, effective  # unterminated: the parser reports it
            raise XmlFileError(
                "", f"prolog longer than {PROLOG_BYTES} bytes", "remove long comments"
            )
        i = end + close


def load_xsd(path: Path) -> etree.XMLSchema:
    """An XSD parsed with the hardened parser; remote includes/imports are refused."""
    override, _ = check_prolog(path, "utf-8")
    try:
        doc = etree.parse(str(path), etree.XMLParser(**parser_options(override)))
        for el in doc.iter():
            loc = el.get("schemaLocation") or ""
            if (
                isinstance(el.tag, str)
                and etree.QName(el).localname in _SCHEMA_REFS
                and "://" in loc
            ):
                raise XmlFileError(
                    "",
                    f"refers to the remote schema {loc}",
                    "download it next to the XSD and refer to it by a relative path",
                )
        return etree.XMLSchema(doc)
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise XmlFileError("", f"cannot be used ({exc})", "fix the XSD or the spec's xsd") from exc


class RecordPath:
    """``Record`` / ``//Record`` (anywhere), ``//Parent/Record`` (suffix) or
    ``/Root/Records/Record`` (absolute); local names, namespaces ignored."""

    def __init__(self, path: str) -> None:
        path = path.strip()
        self.anchored = path.startswith("/") and not path.startswith("//")
        self.parts = [p for p in path.strip("/").split("/") if p]
        if not self.parts:
            raise ValueError("empty record path")

    def matches(self, stack: list[str]) -> bool:
        if self.anchored:
            return stack == self.parts
        return stack[-len(self.parts) :] == self.parts


def iter_records(
    path: Path,
    records: RecordPath,
    *,
    codec: str,
    max_record_bytes: int | None = None,
    flatten: bool = True,
) -> Iterator[dict[str, Any] | None]:
    """Stream the record elements of ``path`` as flat dicts (None each when not
    ``flatten``: a checking pass). Raises :class:`XmlFileError`."""
    override, effective = check_prolog(path, codec)
    names: dict[str, str] = {}
    stack: list[str] = []
    record: Any = None
    size, line, seen = 0, 1, False
    with path.open("rb") as fh:
        ctx = etree.iterparse(fh, events=("start", "end"), **parser_options(override))
        try:
            for event, el in ctx:
                if event == "start":
                    if not stack and el.getroottree().docinfo.doctype:
                        raise XmlFileError("", "has a DOCTYPE", _NO_DOCTYPE)
                    tag = el.tag
                    name = names.get(tag)
                    if name is None:
                        name = names[tag] = _local(tag)
                    stack.append(name)
                    seen, line = True, el.sourceline or line
                    if record is None and records.matches(stack):
                        record, size = el, 0
                    continue
                stack.pop()
                line = el.sourceline or line
                if record is not None:
                    if max_record_bytes is not None:
                        size += len(el.tag) + len(el.text or "") + len(el.tail or "")
                        size += sum(len(k) + len(v) for k, v in el.items())
                        if size > max_record_bytes:
                            raise XmlFileError(
                                f" line {el.sourceline}",
                                f"record above max_record_bytes {max_record_bytes}",
                                "ask the department to check the export or raise the limit",
                            )
                    if el is not record:
                        continue
                    yield flatten_record(el) if flatten else None
                    record = None
                release(el)
        except etree.XMLSyntaxError as exc:
            raise _syntax_error(path, exc, effective) from exc
    if stack or not seen:  # defence in depth: a parser that missed a truncation
        inside = f"inside <{stack[-1]}>" if stack else "before the root element"
        raise XmlFileError(f" line {line}", f"the file ends {inside}", _TRUNCATED)


def validate(path: Path, schema: etree.XMLSchema, codec: str) -> None:
    """Stream ``path`` through ``schema``; raise :class:`XmlFileError` listing the first
    errors with line numbers. Only for files :func:`iter_records` read whole: with a
    schema and ``resolve_entities=False``, lxml 6.1 lets some well-formedness errors
    (truncation, a bare ``&``, an open quote) pass silently."""
    override, _ = check_prolog(path, codec)
    etree.clear_error_log()  # the log is per thread: drop earlier parses' errors
    with path.open("rb") as fh:
        ctx = etree.iterparse(fh, events=("end",), schema=schema, **parser_options(override))
        try:
            for _, el in ctx:
                release(el)
        except etree.XMLSyntaxError as exc:
            errors = locate_schema_errors(path, schema, override)
            listed = "; ".join(f"line {line}: {msg}" for line, msg in errors) or str(exc)
            raise XmlFileError(
                "", f"does not satisfy the XSD ({listed})", "ask the department to correct it"
            ) from exc


def _syntax_error(path: Path, exc: etree.XMLSyntaxError, effective: str) -> XmlFileError:
    line, col = exc.position if exc.position else (exc.lineno, 0)
    msg = re.sub(r", line \d+, column \d+$", "", exc.msg or str(exc))
    if "encoding" in msg.lower() or "bytes" in msg.lower():
        found = locate_undecodable(path, effective)
        if found:  # libxml2 reports where the converted chunk began: find the bytes
            line, col, raw = found
            msg = f"bytes 0x{raw} do not decode as {effective}"
        fix = f"ask the department to re-export it in {effective}, or fix the encoding (spec or XML declaration)"
    else:
        fix = "it is not well-formed XML; ask the department to correct and re-send it"
    return XmlFileError(f" line {line}, column {col}", msg, fix)


def locate_schema_errors(path: Path, schema: Any, override: str | None) -> list[tuple[int, str]]:
    """The first (up to 5) XSD errors with line numbers: a coarse pass finds the 64 KiB
    chunks where errors appear, a second feeds those chunks 16 bytes at a time to a
    push parser and gives each error the line of the element just parsed."""

    def run(fine: set[int]) -> list[tuple[int, int, str]]:
        parser = etree.XMLPullParser(
            events=("start", "end"), schema=schema, **parser_options(override)
        )
        found: list[tuple[int, int, str]] = []
        line = 1
        with path.open("rb") as fh:
            for k, chunk in enumerate(iter(lambda: fh.read(65536), b"")):
                step = 16 if k in fine else len(chunk)
                for i in range(0, len(chunk), step):
                    try:
                        parser.feed(chunk[i : i + step])
                    except etree.XMLSyntaxError:
                        return found
                    for event, el in parser.read_events():
                        line = el.sourceline or line
                        if event == "end":
                            release(el)
                    for err in list(parser.feed_error_log)[len(found) :]:
                        found.append((k, line, err.message))
                    if len(found) >= 5:
                        return found
        return found

    chunks = {k for k, _, _ in run(set())}
    return [(line, msg) for _, line, msg in run(chunks)]


def locate_undecodable(path: Path, encoding: str) -> tuple[int, int, str] | None:
    """Line, column and hex of the first bytes that do not decode (None: all decode)."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        return None
    line, col = 1, 1
    with path.open("rb") as fh:
        for piece in iter(lambda: fh.readline(65536), b""):
            try:
                text = decoder.decode(piece)
            except UnicodeDecodeError as exc:
                col += len(exc.object[: exc.start].decode(encoding, "replace"))
                return line, col, exc.object[exc.start : exc.end].hex()
            if text.endswith("\n"):
                line, col = line + 1, 1
            else:
                col += len(text)
    return None


def release(el: Any) -> None:
    """Free a finished element and its finished previous siblings (flat memory)."""
    el.clear(keep_tail=True)
    parent = el.getparent()
    while parent is not None and el.getprevious() is not None:
        del parent[0]


def flatten_record(el: Any) -> dict[str, Any]:
    """Record element → flat dict: child tags as keys, nested ones as ``a.b``,
    attributes as ``@x`` (``a.@x``); a repeated key collects its values in a list."""
    out: dict[str, Any] = {}
    for k, v in el.items():
        out[f"@{_local(k)}"] = v
    _walk(el, "", out)
    return out


def _walk(el: Any, prefix: str, out: dict[str, Any]) -> None:
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = prefix + _local(tag)
        for k, v in child.items():
            _put(out, f"{name}.@{_local(k)}", v)
        if len(child):
            _walk(child, name + ".", out)
        elif name in out:
            _put(out, name, child.text)
        else:
            out[name] = child.text


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[1] if tag[:1] == "{" else tag


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if key not in out:
        out[key] = value
    elif isinstance(out[key], list):
        out[key].append(value)
    else:
        out[key] = [out[key], value]
