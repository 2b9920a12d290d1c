"""The simulators' TLS flags (``--tls-cert``, ``--tls-key``, ``--tls-client-ca``).

Serving over mutual TLS is exercised end to end in tests/connectors/test_platform_tls.py.
"""

from __future__ import annotations

import pytest

from simulators.__main__ import build_parser
from simulators.serving import ServerTls, tls_from_args

BASE = ["provincial", "--state", "state"]


def test_the_flags_make_a_mutual_tls_server() -> None:
    args = build_parser().parse_args(
        [*BASE, "--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-client-ca", "ca.pem"]
    )
    assert tls_from_args(args) == ServerTls("s.pem", "s.key", "ca.pem")


def test_without_flags_the_server_stays_plain_http() -> None:
    assert tls_from_args(build_parser().parse_args(BASE)) is None


def test_a_key_or_client_ca_without_a_certificate_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args([*BASE, "--tls-client-ca", "ca.pem"])
    with pytest.raises(SystemExit) as exit_:
        tls_from_args(args)
    assert exit_.value.code == 2
    assert "--tls-cert" in capsys.readouterr().err
