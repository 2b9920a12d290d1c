"""JSON log lines with the record identifiers, and personal data masked on the way out."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ehub.logging_setup import MaskingFilter, configure, install_masking, make_handler, mask_text

ID_NUMBER = "370602199001011234"
PHONE = "13812345678"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    log = logging.getLogger("ehub.test.logging_setup")
    handler = make_handler("json", stream)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)
        log.propagate = True


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line_with_identifiers(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.info("sealed %d licenses", 3, extra={"source": "market_regulation.business_licenses",
             "identifier": "1.2.156.3005.2.11370000MB28449441.0001.001", "version": 2,
             "office": "370600"})  # fmt: skip
    log.warning("发证机关 未备案\nsecond line", extra={"stage": "seal", "payload": {"x": 1}})
    first, second = _lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == "ehub.test.logging_setup"
    assert first["message"] == "sealed 3 licenses"
    assert first["source"] == "market_regulation.business_licenses"
    assert first["identifier"] == "1.2.156.3005.2.11370000MB28449441.0001.001"
    assert first["version"] == 2
    assert first["office"] == "370600"
    assert str(first["ts"]).endswith("Z")
    # One line per record even when the message has a newline; Chinese kept readable;
    # keys outside the identifier allow-list are not written.
    assert second["message"] == "发证机关 未备案\nsecond line"
    assert second["stage"] == "seal"
    assert "payload" not in second


def test_id_numbers_and_phones_come_out_masked(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.warning("holder %s phone %s", ID_NUMBER, PHONE)
    log.warning(f"inline {ID_NUMBER.lower()[:-1]}X and +86{PHONE}", extra={"identifier": ID_NUMBER})
    try:
        raise ValueError(f"bad CZZTDM {ID_NUMBER}")
    except ValueError:
        log.exception("normalize failed for %s", PHONE)
    text = stream.getvalue()
    assert ID_NUMBER not in text and PHONE not in text
    assert ID_NUMBER[:-1] not in text
    first, second, third = _lines(stream)
    assert first["message"] == "holder 370602********1234 phone 138****5678"
    assert second["message"] == "inline 370602********123X and +86138****5678"
    assert second["identifier"] == "370602********1234"
    assert "ValueError: bad CZZTDM 370602********1234" in str(third["exception"])
    assert third["message"] == "normalize failed for 138****5678"


def test_what_is_not_personal_data_is_left_alone() -> None:
    kept = [
        "idempotency key 4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
        "USCC 91370000MA3C5LR66T",
        "offset 1234567890123456789",  # 19 digits: not an ID number
        "batch of 138 rows in 13812345 ms",
    ]
    for text in kept:
        assert mask_text(text) == text


def test_install_masking_covers_a_foreign_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("ehub.test.foreign")
    log.addHandler(handler)
    log.propagate = False
    try:
        install_masking(log)
        install_masking(log)
        assert sum(isinstance(f, MaskingFilter) for f in handler.filters) == 1
        log.warning("id %s", ID_NUMBER)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert stream.getvalue() == "id 370602********1234\n"


def test_configure_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="EHUB_LOG_FORMAT"):
        configure(fmt="xml")


def test_the_cli_logs_json_lines_when_asked() -> None:
    # A fresh interpreter: the root logger is configured the way `ehub` does it.
    code = (
        "import logging, sys\n"
        "from ehub.cli import main\n"
        "main.main(['--verbose', 'summary', '--help'], standalone_mode=False)\n"
        f"logging.getLogger('ehub.x').info('holder %s', '{ID_NUMBER}', extra={{'source': 's'}})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"EHUB_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stderr.strip().splitlines()[-1])
    assert line["message"] == "holder 370602********1234"
    assert line["source"] == "s" and line["logger"] == "ehub.x" and line["level"] == "INFO"
