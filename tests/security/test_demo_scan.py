"""A full demo run (``ehub demo``: every source, Airflow, the platforms, the feeds, the
portal's server) scanned for personal data in clear and for secrets.

Scanned: every log the run wrote (the dev stack's services, Airflow's task logs) and
every output meant for people other than the record's owner — the summary, the
departments' rejects reports (CSV and XLSX) — plus what the demo printed. Not
scanned, on purpose: the sealed licenses themselves (a license carries its holder's
name), the hub's and the simulators' databases (the store, and the platforms, which
receive records whole), and the dev PKI (its keys are the scan's subject elsewhere:
``test_secret_scan``). The personal data is harvested from the raw payloads the hub
ingested, by field and by pattern (``test_log_scan.harvest``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from ehub.store.db import Store
from ehub.store.models import RawRecord
from tests.security.test_log_scan import harvest
from tests.security.test_secret_scan import scan

pytestmark = pytest.mark.slow

SKIP_DIRS = {"sim", "pki", "licenses", "airflow.db"}
#: Airflow's generated configuration: its commented examples hold sample URLs such as
#: ``postgresql+asyncpg://…`` with a password (the hub configures
#: Airflow through the environment, never through this file).
SKIP_FILES = {"airflow.cfg"}
SKIP_SUFFIXES = {".db", ".db-wal", ".db-shm", ".sqlite3", ".pdf", ".ofd", ".p12", ".pem"}


def _texts(root: Path) -> dict[str, str]:
    """Relative path → text of every scanned file under ``root`` (XLSX: its XML parts)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        skip = SKIP_DIRS & set(rel.parts) or path.name in SKIP_FILES
        if not path.is_file() or skip or path.suffix in SKIP_SUFFIXES:
            continue
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                out[str(rel)] = "\n".join(z.read(n).decode("utf-8", "replace")
                                          for n in z.namelist() if n.endswith(".xml"))  # fmt: skip
        else:
            out[str(rel)] = path.read_bytes().decode("utf-8", "replace")
    return out


def test_a_demo_run_leaves_no_personal_data_or_secret_in_logs_and_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    env = {**os.environ, "EHUB_HOME": str(home)}
    env.pop("EHUB_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "ehub", "demo", "--count", "60", "--out",
                           str(out)], env=env, capture_output=True, text=True,
                          timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = Store(f"sqlite:///{home / 'demo' / 'hub.db'}")
    try:
        with store.session() as s:
            people = set().union(*(harvest(p) for p in s.scalars(select(RawRecord.payload))))
    finally:
        store.dispose()
    assert len(people) > 50, "the run carried too little personal data to prove anything"
    texts = {**_texts(home / "demo"), **{f"out/{k}": v for k, v in _texts(out).items()},
             "demo stdout": proc.stdout, "demo stderr": proc.stderr}  # fmt: skip
    assert any("airflow" in k and k.endswith(".log") for k in texts), "no Airflow task log"
    assert any(k.startswith("out/rejects") for k in texts), "no rejects report"
    leaks = sorted({(k, p) for k, text in texts.items() for p in people if p in text})
    secrets = [hit for k, text in texts.items() for hit in scan(k, text.encode())]
    with capsys.disabled():
        print(f"\ndemo scan: files scanned {len(texts)}, personal values checked {len(people)}, "
              f"leaks {len(leaks)}, secrets {len(secrets)}")  # fmt: skip
    assert leaks == [], leaks[:10]
    assert secrets == [], secrets[:10]
