"""Secrets: none in the repository, none in what a pipeline run writes.

Two scans:

- the repository (``git ls-files``, plus new files not yet committed and not ignored):
  private keys (actual PEM blocks, not the words), PKCS#12 files, AWS keys, well-known
  token formats, the hub's own credentials (office ``ehof_``, API client ``ehub_``,
  operator ``ehop_`` tokens), URLs with a password, and high-entropy literals assigned
  to secret-looking names — minus :data:`ALLOWED`, each entry with its reason;
- the outputs of a small pipeline run on the embedded stack (the services' logs and
  the out folder: sealed PDFs, signed XML, exports) and the log records of this
  process: the same rules, plus the exact secrets the run used (the dev PKI
  passphrase, the portal secret, the platform tokens, an API client's and an office's
  credentials, which the test puts through the hub's APIs).
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ehub import devstack
from ehub.api_clients import create_client
from ehub.config import Settings
from ehub.offices import add_office
from ehub.store.db import Store
from ehub.tasks import run_stage
from ehub.verify_api import create_app

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 20 * 1024 * 1024

_SECRET_NAME = r"[A-Za-z0-9_]*(?:secret|token|passw(?:or)?d|passphrase|api_?key|private_?key|credential)[A-Za-z0-9_]*"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[bytes]
    strict: bool = True
    """A strict rule holds everywhere, tests included (keys, real token formats)."""


RULES = (
    # An actual PEM block: the BEGIN line, then base64 lines (not the words alone).
    Rule(
        "PEM private key",
        re.compile(
            rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9-]+: [^\n]*\r?\n)*"
            rb"\r?\n?[A-Za-z0-9+/=]{40,}"
        ),
    ),
    # The pkcs-12 arc (1.2.840.113549.1.12) in DER: PBE algorithms and bag types.
    Rule("PKCS#12 content", re.compile(rb"\x06[\x0a-\x0c]\x2a\x86\x48\x86\xf7\x0d\x01\x0c")),
    Rule("AWS access key id", re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")),
    Rule(
        "AWS secret key",
        re.compile(rb"(?i)aws_?secret_?access_?key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}"),
    ),
    Rule(
        "well-known token",
        re.compile(
            rb"(?:gh[pousr]_[A-Za-z0-9]{36}|glpat-[A-Za-z0-9_-]{20}|xox[abprs]-[A-Za-z0-9-]{10,}"
            rb"|sk_live_[A-Za-z0-9]{24}|AIza[0-9A-Za-z_-]{35})"
        ),
    ),
    Rule("JWT", re.compile(rb"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    # token_urlsafe(32) after the prefix: 43 characters, upper case and digits among them
    Rule(
        "hub credential",
        re.compile(
            rb"(?<![A-Za-z0-9])(?:ehof|ehub|ehop)_(?=[\w-]*[A-Z])"
            rb"(?=[\w-]*\d)[A-Za-z0-9_-]{40,}"
        ),
    ),
    Rule(
        "URL with a password",
        re.compile(
            rb"[a-z][a-z0-9+.-]*://[^/\s:@'\"$<{]+:(?![$<{*]|(?:password|passwd|pass|pwd|secret"
            rb"|token)@)[^/\s@'\"]{3,}@"
        ),
        strict=False,
    ),
    Rule("dev credential", re.compile(rb"dev-[a-z]+-(?:token|secret)"), strict=False),
    Rule(
        "secret literal",
        re.compile(
            rb"(?i)(" + _SECRET_NAME.encode() + rb")[\"']?\s*[:=]\s*[\"']([^\"'\s]{8,})[\"']"
        ),
        strict=False,
    ),
)


CLEAR_PEM_KEY = re.compile(rb"-----BEGIN (?!ENCRYPTED)(?:[A-Z0-9]+ )*PRIVATE KEY-----")


@dataclass(frozen=True)
class Allowed:
    paths: tuple[str, ...]
    value: re.Pattern[str]
    rules: tuple[str, ...]
    reason: str


ALLOWED = (
    Allowed(
        ("simulators/*", "ehub/devstack.py", "schemas/*.openapi.yaml", "tests/*"),
        re.compile(r"dev-[a-z]+-(?:token|secret)"),
        ("dev credential", "secret literal"),
        "the simulators' fixed development credentials: they open only the loopback "
        "simulators (documented in their OpenAPI), never a real platform",
    ),
    Allowed(
        ("ehub/config.py", "ehub/pipeline/deliver.py"),
        re.compile(r"dev-(?:provincial|national)-token"),
        ("dev credential",),
        "Settings falls back to the simulators' dev tokens when EHUB_PROVINCIAL_TOKEN / "
        "EHUB_NATIONAL_TOKEN are unset, for the dev stack; delivery refuses to send them to "
        "a platform that is not on loopback (tests/ehub/test_platform_tokens.py)",
    ),
    Allowed(
        ("tests/*",),
        re.compile(r".*"),
        ("secret literal", "URL with a password"),
        "literal credentials of in-process fakes (httpx.MockTransport, TestClient), "
        "and of the CI PostgreSQL, which trusts loopback",
    ),
)


def entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(n / len(s) * math.log2(n / len(s)) for n in counts.values())


def _secret_like(value: str) -> bool:
    """A literal that could be a secret, not an env-var name, file name or placeholder."""
    if re.fullmatch(r"[A-Z0-9_]+", value) or value.startswith(("$", "{", "<", "%", "*")):
        return False
    if re.fullmatch(r"[\w.-]+\.(?:pass|pin|pem|key|p12|json|txt|secret)", value):
        return False
    classes = sum(bool(re.search(c, value)) for c in (r"[a-z]", r"[A-Z]", r"\d", r"[^A-Za-z0-9]"))
    return len(value) >= 12 and (classes >= 3 or entropy(value) >= 4.0)


def scan(rel: str, data: bytes) -> Iterator[tuple[str, str, str]]:
    """(path, rule, excerpt) of each finding in one file, after the allow-list."""
    for rule in RULES:
        for m in rule.pattern.finditer(data):
            value = (m.group(2) if rule.name == "secret literal" else m.group(0)).decode(
                "utf-8", "replace"
            )
            if rule.name == "secret literal" and not _secret_like(value):
                continue
            if not rule.strict and any(
                rule.name in a.rules
                and any(fnmatch(rel, p) for p in a.paths)
                and a.value.fullmatch(value)
                for a in ALLOWED
            ):
                continue
            yield rel, rule.name, value[:60]


def repository_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({f for f in out.splitlines() if (ROOT / f).is_file()})


def test_the_repository_holds_no_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    files = repository_files()
    findings = []
    for rel in files:
        path = ROOT / rel
        if rel.lower().endswith((".p12", ".pfx", ".jks", ".keystore")):
            findings.append((rel, "key store file", rel))
        if path.stat().st_size <= MAX_BYTES:
            findings += scan(rel, path.read_bytes())
    with capsys.disabled():
        print(f"\nsecret scan (repository): files scanned {len(files)}, secrets {len(findings)}")
    assert len(files) > 100, "git ls-files found almost nothing: the scan would prove nothing"
    assert findings == [], "\n".join(map(str, findings))


def test_the_scanner_finds_what_it_looks_for() -> None:
    """Each rule fires on a generated sample (the samples are built here, never stored)."""
    import base64
    import secrets

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    p12 = pkcs12.serialize_key_and_certificates(
        b"k", key, None, None, serialization.BestAvailableEncryption(b"pw")
    )
    tok = secrets.token_urlsafe(32)
    samples = {
        "PEM private key": pem,
        "PKCS#12 content": p12,
        "AWS access key id": b"AKIA" + base64.b32encode(secrets.token_bytes(10))[:16],
        "hub credential": f"ehof_{tok}".encode(),
        "JWT": b".".join(
            base64.urlsafe_b64encode(part).rstrip(b"=")
            for part in (b'{"alg":"HS256"}', b'{"sub":"office"}', secrets.token_bytes(32))
        ),
        "URL with a password": f"postgresql://ehub:{tok}@db/ehub".encode(),
        "secret literal": f'client_secret = "{tok}"'.encode(),
    }
    for rule, data in samples.items():
        assert rule in {r for _, r, _ in scan("ehub/x.py", data)}, rule
    assert "PEM private key" in {r for _, r, _ in scan("ehub/x.py", enc)}
    # the words alone, env-var names, file names and the dev tokens in their places pass
    quiet = (
        b'assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")\n'
        b'PASSPHRASE_ENV = "EHUB_SEAL_PASSPHRASE"\nPASSPHRASE_FILE = "seal.pass"\n'
        b'DEFAULT_TOKEN_LABEL = "ehub-dev-seal"\n'
        b'url = "postgresql+psycopg://user@host/db"\n'
    )
    assert list(scan("ehub/x.py", quiet)) == []
    assert list(scan("simulators/x.py", b'DEV_TOKEN = "dev-national-token"')) == []
    assert list(scan("ehub/x.py", b'DEV_TOKEN = "dev-national-token"')) != []


@pytest.fixture
def run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[tuple[Settings, list[str]]]:
    """A small journey on the embedded stack; the secrets it used."""
    home = tmp_path / "home"
    caplog.set_level(logging.DEBUG)
    try:
        devstack.up(
            home, seed_count=20, defect_rate=0.1, seed=23, departments=("market_regulation",)
        )
        settings = Settings.from_env(
            home=home, out_dir=home / "out", batch_size=25, source_batch_size=25
        )
        for stage in ("extract", "normalize"):
            run_stage(stage, settings, "market_regulation.business_licenses")
        for stage in ("seal", "deliver", "deliver_national", "publish"):
            run_stage(stage, settings)
        store = Store(settings.database_url)
        try:
            from signing.pki import DEV_DEPARTMENT_USCC
            from simulators.issuing_system import SOURCE_ID, license_post, post_license

            _, api_token = create_client(store, "sec-secret-scan", DEV_DEPARTMENT_USCC, [SOURCE_ID])
            _, office_token = add_office(
                store,
                "370102-secscan",
                "历下区",
                "370102",
                kinds=("license",),
                fields={"license": {"*"}},
            )
            with TestClient(create_app(settings)) as http:
                post = license_post(1, issuer_uscc=DEV_DEPARTMENT_USCC, seed=23)
                assert post_license(http, api_token, post).status_code in (200, 201, 202)
                r = http.get(
                    "/v1/offices/370102-secscan/records",
                    headers={"Authorization": f"Bearer {office_token}"},
                )
                assert r.status_code == 200
                bad = http.get(
                    "/v1/offices/370102-secscan/records",
                    headers={"Authorization": f"Bearer {office_token}x"},
                )
                assert bad.status_code == 401 and office_token not in bad.text
        finally:
            store.dispose()
        known = [api_token, office_token, settings.provincial_token, settings.national_token]
        for name in ("pki/seal.pass", "portal.secret"):
            if (home / name).exists():
                known.append((home / name).read_text("utf-8").strip())
        yield settings, [k for k in known if k and len(k) >= 8]
    finally:
        devstack.down(home)


def test_a_pipeline_run_writes_no_secrets(
    run: tuple[Settings, list[str]],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, known = run
    outputs = sorted(
        p
        for p in [*(settings.home / "dev" / "logs").rglob("*"), *settings.out_dir.rglob("*")]
        if p.is_file()
    )
    findings: list[tuple[str, str, str]] = []
    for path in outputs:
        data = path.read_bytes()
        rel = str(path.relative_to(settings.home))
        findings += scan(rel, data)
        findings += [
            (rel, "secret used by the run", k[:6] + "…") for k in known if k.encode() in data
        ]
    records = caplog.get_records("setup") + caplog.get_records("call")
    logged = "\n".join(r.getMessage() for r in records)
    findings += [
        ("log records", "secret used by the run", k[:6] + "…") for k in known if k in logged
    ]
    # The dev PKI's keys are the only keys the run leaves, under the hub home: in PKCS#12
    # files or encrypted PEM, and those in clear (the TLS keys) readable by the owner only.
    clear = [
        p
        for p in settings.home.rglob("*")
        if p.is_file() and not p.is_symlink() and CLEAR_PEM_KEY.search(p.read_bytes())
    ]
    findings += [
        (
            str(p.relative_to(settings.home)),
            "clear private key readable by others",
            oct(p.stat().st_mode & 0o777),
        )
        for p in clear
        if p.stat().st_mode & 0o077
    ]
    findings += [
        (str(p.relative_to(settings.home)), "clear private key outside pki/", "")
        for p in clear
        if "pki" not in p.relative_to(settings.home).parts
    ]
    pdfs = [p for p in outputs if p.suffix == ".pdf"]
    with capsys.disabled():
        print(
            f"\nsecret scan (pipeline outputs): files scanned {len(outputs)} ({len(pdfs)} "
            f"sealed PDFs, {len(known)} secrets of the run looked for, {len(records)} "
            f"log records; {len(clear)} clear dev keys under pki/, owner-only), "
            f"secrets {len(findings)}"
        )
    assert pdfs and len(known) >= 4 and records, "the run produced nothing to scan"
    assert findings == [], "\n".join(map(str, findings))
