"""The office registry: validation naming the field, credentials kept as hashes, grants, revocation, CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ehub.cli import main
from ehub.errors import ConfigError
from ehub.offices import (
    Office,
    OfficeError,
    OfficeNotFound,
    add_office,
    authenticate,
    get_office,
    grant,
    issue_credential,
    list_offices,
    revoke,
    token_digest,
)
from ehub.store.db import Store
from ehub.store.models import OfficeCredentialRow

BUSINESS = "11100000000013338W001"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    s.migrate()
    yield s
    s.dispose()


def _add(store: Store, code: str = "370602-zfq", division: str = "370602", **kw: object):
    args: dict[str, object] = {"kinds": ["license"], "fields": {"license": ["ZZBS", "CZZT"]}}
    args.update(kw)
    return add_office(store, code, "芝罘区行政审批服务局", division, **args)  # type: ignore[arg-type]


def test_add_get_list_and_levels(store: Store) -> None:
    county, _ = _add(store, include_children=True, license_types=[BUSINESS])
    city, _ = _add(store, "3706-yt", "370600", kinds=["license", "case"],
                   fields={"license": ["*"], "case": ["BJBH", "SQRMC"]})  # fmt: skip
    town, _ = _add(store, "370602001-xnjd", "370602001", delivery=["kafka", "file"])
    assert (city.level, county.level, town.level) == ("city", "county", "township")
    got = get_office(store, "370602-zfq")
    assert got == county and got.license_types == {BUSINESS} and got.include_children
    assert got.fields == {"license": {"ZZBS", "CZZT"}} and len(got.credential_hints) == 1
    assert [o.code for o in list_offices(store)] == ["3706-yt", "370602-zfq", "370602001-xnjd"]
    assert get_office(store, "370602001-xnjd").delivery == {"kafka", "file"}
    with pytest.raises(OfficeNotFound):
        get_office(store, "nope")
    with pytest.raises(OfficeError, match="code: an office with this code exists"):
        _add(store)


@pytest.mark.parametrize(
    ("kw", "field", "text"),
    [
        ({"division": "379999"}, "division", "not in the GB/T 2260 table"),
        ({"division": "37060"}, "division", "6 digits"),
        ({"division": "370602000"}, "division", "9 digits"),
        ({"division": "370000"}, "division", "province division"),
        ({"level": "township"}, "level", "does not match"),
        ({"kinds": []}, "kinds", "at least one"),
        ({"kinds": ["permit"]}, "kinds", "permit"),
        ({"fields": {}}, "fields.license", "give the fields"),
        ({"fields": {"license": ["ZZBS", "NOPE"]}}, "fields.license", "NOPE"),
        ({"fields": {"license": ["*"], "case": ["BJBH"]}}, "fields", "not granted"),
        ({"masking": {"CZZT": "blur"}}, "masking.CZZT", "blur"),
        ({"masking": {"SQRMC": "name"}}, "masking.SQRMC", "not a field"),
        ({"license_types": ["123"]}, "license_types", "not a license type"),
        ({"delivery": ["email"]}, "delivery", "email"),
        ({"code": "Bad Code"}, "code", "not a valid office code"),
    ],
)
def test_validation_names_the_field(
    store: Store, kw: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(OfficeError) as exc:
        _add(store, **kw)  # type: ignore[arg-type]
    assert exc.value.field == field and text in str(exc.value)
    assert isinstance(exc.value, ConfigError)
    assert list_offices(store) == []


def test_office_record_is_frozen_and_validated_directly() -> None:
    o = Office("t1", "x", "370602001", "township", frozenset({"case"}), {"case": {"BJBH"}})
    with pytest.raises(AttributeError):
        o.division = "370602"  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.fields["case"] = frozenset()  # type: ignore[index]
    with pytest.raises(OfficeError, match="level"):
        Office("t1", "x", "370602", "city", frozenset({"case"}), {"case": {"BJBH"}})


def test_credentials_hashed_authenticate_and_revoke(store: Store) -> None:
    office, token = _add(store)
    with store.session() as s:
        row = s.scalars(select(OfficeCredentialRow)).one()
        assert row.token_sha256 == token_digest(token) and token not in str(vars(row))
    assert authenticate(store, token) == office
    assert authenticate(store, token + "x") is None
    assert authenticate(store, "not-a-token") is None
    second = issue_credential(store, office.code)
    hints = get_office(store, office.code).credential_hints
    assert len(hints) == 2 and second.startswith(hints[1])
    # Revoking one credential leaves the other working.
    revoke(store, office.code, credential=hints[0])
    assert authenticate(store, token) is None
    assert authenticate(store, second) is not None
    with pytest.raises(OfficeNotFound, match="credential"):
        revoke(store, office.code, credential=hints[0])
    # Revoking the office refuses every credential.
    gone = revoke(store, office.code)
    assert not gone.active and gone.credential_hints == ()
    assert authenticate(store, second) is None
    with pytest.raises(OfficeError, match="revoked already"):
        revoke(store, office.code)
    with pytest.raises(OfficeError, match="revoked"):
        issue_credential(store, office.code)
    assert [o.code for o in list_offices(store, include_revoked=False)] == []


def test_grant_widens_and_is_validated(store: Store) -> None:
    _add(store, license_types=[BUSINESS])
    with pytest.raises(OfficeError, match=r"fields\.case"):
        grant(store, "370602-zfq", kinds=["case"])
    o = grant(store, "370602-zfq", kinds=["case"], fields={"case": ["BJBH"], "license": ["KZ"]},
              masking={"KZ_ZS": "address"}, delivery=["kafka"], include_children=True,
              license_types=["11100000000013338W002"])  # fmt: skip
    assert o.kinds == {"license", "case"} and o.fields["license"] == {"ZZBS", "CZZT", "KZ"}
    assert o.masking == {"KZ_ZS": "address"} and o.delivery == {"pull", "kafka"}
    assert o.include_children and len(o.license_types) == 2
    assert get_office(store, "370602-zfq") == o
    _add(store, "all-types")
    with pytest.raises(OfficeError, match="every license type already"):
        grant(store, "all-types", license_types=[BUSINESS])
    with pytest.raises(OfficeNotFound):
        grant(store, "nope", kinds=["case"])


def test_cli_add_list_show_grant_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("EHUB_DATABASE_URL", url)
    monkeypatch.setenv("EHUB_HOME", str(tmp_path / "home"))
    run = CliRunner().invoke
    made = run(main, ["office", "add", "370602-zfq", "--name", "芝罘区行政审批服务局",
                      "--division", "370602", "--kind", "license", "--include-children",
                      "--fields", "license=ZZBS,ZZMC,CZZT,KZ_ZS", "--mask", "KZ_ZS=address",
                      "--delivery", "kafka", "--delivery", "pull", "--token-only"])  # fmt: skip
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    store = Store(url)
    try:
        assert authenticate(store, token) is not None
        listed = run(main, ["office", "list"])
        assert listed.exit_code == 0 and "370602-zfq" in listed.output
        assert token not in listed.output and "active" in listed.output
        shown = run(main, ["office", "show", "370602-zfq"])
        assert shown.exit_code == 0, shown.output
        assert "芝罘区" in shown.output and "KZ_ZS=address" in shown.output
        assert token not in shown.output and token[:11] in shown.output
        bad = run(main, ["office", "add", "x1", "--name", "x", "--division", "379999",
                         "--kind", "case", "--fields", "case=BJBH"])  # fmt: skip
        assert bad.exit_code != 0 and "division" in bad.output and "379999" in bad.output
        nofields = run(main, ["office", "add", "x2", "--name", "x", "--division", "370602",
                              "--kind", "case", "--fields", "BJBH"])  # fmt: skip
        assert nofields.exit_code != 0 and "KEY=VALUE" in nofields.output
        granted = run(main, ["office", "grant", "370602-zfq", "--kind", "case",
                             "--fields", "case=BJBH,SQRMC"])  # fmt: skip
        assert granted.exit_code == 0, granted.output
        assert get_office(store, "370602-zfq").kinds == {"license", "case"}
        said = run(main, ["office", "add", "370602-fs", "--name", "y", "--division", "370602",
                          "--kind", "case", "--fields", "case=*"])  # fmt: skip
        assert said.exit_code == 0 and "credential (shown once" in said.output
        assert run(main, ["office", "revoke", "370602-zfq"]).exit_code == 0
        assert authenticate(store, token) is None
        again = run(main, ["office", "revoke", "370602-zfq"])
        assert again.exit_code != 0 and "revoked already" in again.output
        missing = run(main, ["office", "show", "nope"])
        assert missing.exit_code != 0 and "no such office" in missing.output
    finally:
        store.dispose()
