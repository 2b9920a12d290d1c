"""Source specs: the real specs load, and every invalid spec is reported as a SpecError
whose problems point at the offending line and column (``file:line:col: path: message``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from ehub.errors import SpecError
from ehub.sources import loader
from ehub.sources.fields import required_fields
from ehub.sources.spec import FieldMap, SourceSpec, spec_from_dict

# A spec of its own (the real ones may change): license source, flow-style mappings.
SPEC = """\
# test spec
department:
  code: market_regulation
  name: 山东省市场监督管理局
source: test_licenses
kind: sql
connection: ehub_src_test
record_kind: license
license_type: 营业执照
batch_size: 500
sql:
  table: T_TEST
key: ID
cursor:
  field: GXSJ
contract:
  unknown_fields: reject
codelists:
  jlzt:
    "1": valid
    "2": revoked
mapping:
  ZZBH: {from: ZCH}
  ZZBFJG: {from: DJJG}
  ZZBFJGDM: {from: DJJGDM, transform: [trim, halfwidth, upper]}
  ZZBFRQ: {from: FZRQ, date: ["%Y-%m-%d", "%Y%m%d"]}
  CZZT: {from: QYMC}
  CZZTDM: {from: TYSHXYDM}
  CZZTDMLXDM: {const: "001"}
  CZZTQHDM: {from: XZQHDM}
  ZZZT: {from: JLZT, codelist: jlzt}
  KZ_ZS: {from: ZS}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def variant(old: str, new: str) -> str:
    assert SPEC.count(old) == 1, old
    return SPEC.replace(old, new)


def at(text: str, line_has: str, token: str) -> tuple[int, int]:
    """1-based (line, column) of ``token`` on the first line containing ``line_has``."""
    for n, line in enumerate(text.splitlines(), start=1):
        if line_has in line:
            return n, line.index(token) + 1
    raise AssertionError(f"no line contains {line_has!r}")


def problems(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        loader.load_spec(path)
    assert info.value.file == str(path)
    return info.value.problems


def only_problem(tmp_path: Path, text: str) -> tuple[int, int, str, str]:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


# --- the real specs ---------------------------------------------------------------


def test_every_real_spec_loads_with_unique_ids() -> None:
    files = loader.spec_files()
    assert files, "no spec under sources/"
    specs = [loader.load_spec(p) for p in files]
    assert len({s.id for s in specs}) == len(specs)
    assert len({s.dag_id for s in specs}) == len(specs)
    for spec in specs:
        assert set(required_fields(spec.record_kind)) <= set(spec.mapping)
        assert spec.id == f"{spec.department.code}.{spec.source}"


def test_business_licenses_spec() -> None:
    spec = loader.find_spec("market_regulation.business_licenses")
    assert spec.dag_id == "ingest__market_regulation__business_licenses"
    assert loader.find_spec(spec.dag_id) == spec
    assert (spec.kind, spec.record_kind, spec.key) == ("sql", "license", "ID")
    assert spec.sql is not None and spec.sql.table == "T_SCJG_YYZZ"
    assert spec.cursor.field == "GXSJ"
    assert spec.license_type_code() == ("11100000000013338W001", "营业执照")
    assert spec.codelists["jlzt"] == {"1": "valid", "2": "revoked", "3": "cancelled"}
    assert spec.mapping["ZZZT"].codelist == "jlzt"
    assert spec.mapping["CZZTDMLXDM"].const == "001"
    assert spec.mapping["ZZYXQJZRQ"].long_term == ("长期", "永久")
    # Ignored and cursor fields are read (not 'unknown'); secrets are not in the spec.
    assert {"DJJGQHDM", "GXSJ", "ID", "QYMC"} <= spec.read_fields()
    assert spec.connection == "ehub_src_market_regulation"


def test_find_spec_unknown_id_and_sources_dir_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SpecError, match=r"no spec 'nope\.nothing'"):
        loader.find_spec("nope.nothing")
    (tmp_path / "dept").mkdir()
    write(tmp_path / "dept", SPEC, "a.yml")
    write(tmp_path / "dept", "not a spec", "notes.txt")
    monkeypatch.setenv(loader.SOURCES_ENV, str(tmp_path))
    assert loader.default_sources_dir() == tmp_path.resolve()
    assert loader.spec_files() == [tmp_path / "dept" / "a.yml"]
    assert [s.id for s in loader.load_all()] == ["market_regulation.test_licenses"]


def test_the_test_spec_itself_is_valid(tmp_path: Path) -> None:
    spec = loader.load_spec(write(tmp_path, SPEC))
    assert spec.id == "market_regulation.test_licenses"
    assert spec.mapping["ZZBFRQ"].date == ("%Y-%m-%d", "%Y%m%d")
    assert spec.mapping["ZZBFJGDM"].transform == ("trim", "halfwidth", "upper")
    assert spec.mapping["CZZT"].transform == ("trim",)  # the default


def test_files_xsd_is_resolved_next_to_the_spec(tmp_path: Path) -> None:
    text = variant("kind: sql", "kind: files").replace(
        "sql:\n  table: T_TEST\n", "files:\n  pattern: '*.xml'\n  xsd: schema/x.xsd\n"
    )
    spec = loader.load_spec(write(tmp_path, text))
    assert spec.files is not None
    assert spec.files.xsd == str((tmp_path / "schema" / "x.xsd").resolve())


# --- problems located at line and column -----------------------------------------


def test_unknown_top_level_key_is_shown_at_the_key(tmp_path: Path) -> None:
    text = variant("batch_size: 500\n", "batch_size: 500\nbatchsize: 5\n")
    assert only_problem(tmp_path, text) == (
        *at(text, "batchsize:", "batchsize"),
        "batchsize",
        "unknown key (not part of the source spec)",
    )


def test_unknown_nested_key_is_shown_at_the_key(tmp_path: Path) -> None:
    text = variant("  table: T_TEST\n", "  table: T_TEST\n  tabel: X\n")
    assert only_problem(tmp_path, text)[:3] == (*at(text, "tabel", "tabel"), "sql.tabel")


def test_unknown_key_in_a_flow_mapping_is_shown_at_the_key(tmp_path: Path) -> None:
    text = variant("ZZBH: {from: ZCH}", "ZZBH: {from: ZCH, form: X}")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "form: X", "form"), "mapping.ZZBH.form")
    assert msg.startswith("unknown key")


def test_bad_value_type_is_shown_at_the_value(tmp_path: Path) -> None:
    text = variant("batch_size: 500", "batch_size: lots")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "batch_size", "lots"), "batch_size")
    assert "integer" in msg


def test_bad_list_item_is_shown_at_the_item(tmp_path: Path) -> None:
    text = variant("[trim, halfwidth, upper]", "[trim, shout, upper]")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "shout", "shout"), "mapping.ZZBFJGDM.transform.1")
    assert "'halfwidth'" in msg


def test_missing_required_key_names_it(tmp_path: Path) -> None:
    text = variant("key: ID\n", "")
    assert only_problem(tmp_path, text) == (
        *at(text, "department:", "department"),  # the enclosing mapping
        "key",
        "required key is missing",
    )
    text = variant("  name: 山东省市场监督管理局\n", "")
    assert only_problem(tmp_path, text) == (
        *at(text, "code: market_regulation", "code"),
        "department.name",
        "required key is missing",
    )


def test_unknown_mapping_target_is_shown_at_the_target(tmp_path: Path) -> None:
    text = variant("KZ_ZS: {from: ZS}", "ZZXX: {from: ZS}")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "ZZXX", "ZZXX"), "mapping.ZZXX")
    assert "mapping target 'ZZXX' is not a license field" in msg


def test_case_fields_are_not_license_targets(tmp_path: Path) -> None:
    text = variant("KZ_ZS: {from: ZS}", "BJBH: {from: ZS}")
    assert only_problem(tmp_path, text)[:3] == (*at(text, "BJBH", "BJBH"), "mapping.BJBH")


def test_undefined_codelist_is_shown_at_its_name(tmp_path: Path) -> None:
    text = variant("codelist: jlzt", "codelist: zt")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "codelist: zt", "zt}"), "mapping.ZZZT.codelist")
    assert msg == "mapping ZZZT: codelist 'zt' is not defined"


@pytest.mark.parametrize(
    ("regex", "message"),
    [("'([0-9'", "regex does not compile"), ("'[0-9]+'", "regex needs one capturing group")],
)
def test_bad_regex_is_shown_at_the_regex(tmp_path: Path, regex: str, message: str) -> None:
    text = variant("CZZT: {from: QYMC}", f"CZZT: {{from: QYMC, regex: {regex}}}")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "regex:", regex), "mapping.CZZT.regex")
    assert msg.startswith(message)


@pytest.mark.parametrize("fmt", ["%Q", "%Y%", "%Y-%m-%d %"])
def test_bad_date_format_is_shown_at_the_format(tmp_path: Path, fmt: str) -> None:
    text = variant('"%Y%m%d"]', f'"{fmt}"]')
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "ZZBFRQ", f'"{fmt}"'), "mapping.ZZBFRQ.date.1")
    assert msg.startswith(f"bad date format {fmt!r}")


def test_bad_datetime_format_and_tz(tmp_path: Path) -> None:
    text = variant("KZ_ZS: {from: ZS}", 'KZ_ZS: {from: ZS, datetime: ["%Y-%m-%d %J"]}')
    assert only_problem(tmp_path, text)[:3] == (
        *at(text, "KZ_ZS", '"%Y'),
        "mapping.KZ_ZS.datetime.0",
    )
    text = variant("KZ_ZS: {from: ZS}", 'KZ_ZS: {from: ZS, tz: "+8"}')
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path, msg) == (
        *at(text, "KZ_ZS", '"+8"'),
        "mapping.KZ_ZS.tz",
        "tz must be a UTC offset like +08:00",
    )


def test_duplicate_yaml_key_is_shown_at_the_second_occurrence(tmp_path: Path) -> None:
    text = variant("  CZZT: {from: QYMC}\n", "  CZZT: {from: QYMC}\n  CZZT: {from: ZS}\n")
    line, col, path, msg = only_problem(tmp_path, text)
    first = at(text, "CZZT: {from: QYMC}", "CZZT")
    assert (line, col, path, msg) == (first[0] + 1, 3, "mapping.CZZT", "duplicate key")


def test_duplicate_keys_are_all_reported(tmp_path: Path) -> None:
    text = variant("source: test_licenses\n", "source: test_licenses\nsource: again\n")
    text = text.replace('    "2": revoked\n', '    "2": revoked\n    "2": cancelled\n')
    found = problems(tmp_path, text)
    assert [(p[2], p[3]) for p in found] == [
        ("source", "duplicate key"),
        ("codelists.jlzt.2", "duplicate key"),
    ]
    assert found[0][:2] == (at(text, "source: again", "source")[0], 1)


def test_invalid_yaml_syntax_is_shown_where_the_parser_stopped(tmp_path: Path) -> None:
    text = variant("key: ID\n", "key: ID\n\tfoo: 1\n")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (at(text, "\tfoo", "\t")[0], 1, "")
    assert msg.startswith("not valid YAML: found character '\\t'")
    text = variant("name: 山东省市场监督管理局", 'name: "山东省市场监督管理局')
    assert only_problem(tmp_path, text)[3].startswith("not valid YAML")


def test_yaml_that_composes_but_does_not_construct_is_a_spec_error(tmp_path: Path) -> None:
    text = variant("key: ID", "key: !custom ID")
    assert only_problem(tmp_path, text)[:2] == at(text, "!custom", "!custom")
    text = variant("key: ID\n", "key: ID\n? [a, b]\n: 1\n")
    assert only_problem(tmp_path, text)[3] == "not valid YAML: found unhashable key"


def test_empty_or_non_mapping_file(tmp_path: Path) -> None:
    assert only_problem(tmp_path, "# nothing\n") == (1, 1, "", "the file is empty")
    assert only_problem(tmp_path, "- a\n- b\n")[:3] == (1, 1, "")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"source: \xff\xfe\n")
    with pytest.raises(SpecError, match="cannot read the file"):
        loader.load_spec(path)


def test_kind_without_its_section_is_shown_at_the_kind(tmp_path: Path) -> None:
    text = variant("kind: sql", "kind: rest")
    assert only_problem(tmp_path, text) == (
        *at(text, "kind: rest", "rest"),
        "kind",
        "kind rest needs a `rest:` section",
    )


def test_a_section_of_another_kind_is_shown_at_its_key(tmp_path: Path) -> None:
    text = variant("key: ID\n", "key: ID\nkafka:\n  topic: t\n")
    assert only_problem(tmp_path, text) == (
        *at(text, "kafka:", "kafka"),
        "kafka",
        "kind sql does not take section(s) kafka",
    )


def test_sql_source_needs_a_cursor_field(tmp_path: Path) -> None:
    text = variant("  field: GXSJ\n", "  type: integer\n")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "type: integer", "type"), "cursor")
    assert "needs cursor.field" in msg


def test_mapping_lacking_a_required_field_is_shown_at_mapping(tmp_path: Path) -> None:
    text = variant("  CZZT: {from: QYMC}\n", "")
    assert only_problem(tmp_path, text) == (
        *at(text, "mapping:", "mapping"),
        "mapping",
        "mapping lacks required field(s) CZZT",
    )


def test_unknown_license_type_is_shown_at_the_value(tmp_path: Path) -> None:
    text = variant("license_type: 营业执照", "license_type: 驾驶证")
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, "license_type", "驾驶证"), "license_type")
    assert msg == "license_type '驾驶证' is not in schemas/codelists/license_types.json"


def test_license_type_by_code_and_missing_license_type(tmp_path: Path) -> None:
    text = variant("license_type: 营业执照", "license_type: 11100000000013338W002")
    assert loader.load_spec(write(tmp_path, text)).license_type_code()[1] == "食品经营许可证"
    text = variant("license_type: 营业执照\n", "")
    assert only_problem(tmp_path, text)[2:] == (
        "record_kind",
        "record_kind license needs license_type",
    )


@pytest.mark.parametrize(
    ("old", "new", "needs"),
    [
        ('ZZBFRQ: {from: FZRQ, date: ["%Y-%m-%d", "%Y%m%d"]}', "ZZBFRQ: {from: FZRQ}", "date"),
        ("KZ_ZS: {from: ZS}", "BBH: {from: ZS}", "integer"),
    ],
)
def test_typed_field_without_its_conversion(tmp_path: Path, old: str, new: str, needs: str) -> None:
    text = variant(old, new)
    target = new.split(":", 1)[0]
    line, col, path, msg = only_problem(tmp_path, text)
    assert (line, col, path) == (*at(text, new, "{"), f"mapping.{target}")
    assert f"needs `{needs}" in msg


def test_other_value_errors(tmp_path: Path) -> None:
    text = variant("connection: ehub_src_test", "connection: 'bad id!'")
    assert only_problem(tmp_path, text)[:3] == (*at(text, "connection", "'bad"), "connection")
    text = variant("batch_size: 500", "batch_size: 500\nencoding: utf-99")
    assert only_problem(tmp_path, text) == (
        *at(text, "encoding", "utf-99"),
        "encoding",
        "unknown encoding 'utf-99'",
    )
    text = variant("  ZZBH: {from: ZCH}", "  ZZBH: {from: ZCH, const: X}")
    assert only_problem(tmp_path, text)[2:] == (
        "mapping.ZZBH",
        "give exactly one of from, const, concat",
    )


def test_several_problems_are_all_listed(tmp_path: Path) -> None:
    text = variant("batch_size: 500", "batch_size: 0\nbatchsize: 1").replace(
        "  table: T_TEST", "  table: T_TEST\n  tabel: x"
    )
    found = problems(tmp_path, text)
    assert sorted(p[2] for p in found) == ["batch_size", "batchsize", "sql.tabel"]


def test_spec_error_str_is_one_file_line_col_path_message_per_problem(tmp_path: Path) -> None:
    text = variant("batch_size: 500", "batch_size: 0\nbatchsize: 1")
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        loader.load_spec(path)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems) == 2
    for line, (ln, col, where, msg) in zip(lines, info.value.problems, strict=True):
        assert line == f"{path}:{ln}:{col}: {where}: {msg}"
    bl, bc = at(text, "batch_size", "0")
    assert f"{path}:{bl}:{bc}: batch_size: " in str(info.value)
    assert SpecError("f.yaml", [(3, 7, "a.b", "boom")]).args[0] == "f.yaml:3:7: a.b: boom"


# --- the models directly ---------------------------------------------------------


def spec_dict(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SPEC)
    data.update(over)
    return data


def test_spec_from_dict_and_derived_names() -> None:
    spec = spec_from_dict(spec_dict())
    assert isinstance(spec, SourceSpec)
    assert spec.dag_id == "ingest__market_regulation__test_licenses"
    assert spec.read_fields() == frozenset(
        {"ID", "GXSJ", "ZCH", "DJJG", "DJJGDM", "FZRQ", "QYMC", "TYSHXYDM", "XZQHDM", "JLZT", "ZS"}
    )


def test_specs_are_frozen() -> None:
    spec = spec_from_dict(spec_dict())
    with pytest.raises(ValidationError):
        spec.source = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fm", "message"),
    [
        ({}, "give exactly one of from, const, concat"),
        ({"from": "a", "concat": ["a", "b"]}, "give exactly one of"),
        ({"from": "a", "date": ["%Y"], "datetime": ["%Y"]}, "give date or datetime, not both"),
        ({"from": "a", "regex": "a(b"}, "regex does not compile"),
        ({"from": "a", "tz": "08:00"}, "tz must be a UTC offset"),
        ({"from": "a", "transform": ["strip"]}, "Input should be"),
    ],
)
def test_field_map_validation(fm: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FieldMap.model_validate(fm)


def test_field_map_source_fields() -> None:
    assert FieldMap.model_validate({"from": "builder.creditCode"}).source_fields() == ("builder",)
    assert FieldMap.model_validate({"concat": ["a.x", "b"]}).source_fields() == ("a", "b")
    assert FieldMap.model_validate({"const": "1"}).source_fields() == ()
    with pytest.raises(ValidationError, match="valid string"):
        FieldMap.model_validate({"const": 1})  # unquoted YAML numbers lose leading zeros


def test_case_specs_reject_surface_fields_and_extend() -> None:
    mapping: dict[str, Any] = {f: {"from": f.lower()} for f in required_fields("case")}
    mapping["SBSJ"] = {"from": "sbsj", "datetime": ["%Y-%m-%d %H:%M:%S"]}
    case: dict[str, Any] = {
        "department": {"code": "housing", "name": "山东省住房和城乡建设厅"},
        "source": "cases",
        "kind": "kafka",
        "connection": "c",
        "record_kind": "case",
        "key": "id",
        "kafka": {"topic": "t"},
        "mapping": mapping,
    }
    assert spec_from_dict(case).record_kind == "case"
    with pytest.raises(ValidationError, match="not a case field"):
        spec_from_dict({**case, "mapping": {**mapping, "KZ_X": {"from": "x"}}})
    with pytest.raises(ValidationError, match="extend applies to licenses only"):
        spec_from_dict({**case, "contract": {"unknown_fields": "extend"}})
    with pytest.raises(ValidationError, match="table lookups need kind sql"):
        lookup = {"from": "x", "lookup": {"table": "t", "key": "k", "value": "v"}}
        spec_from_dict({**case, "mapping": {**mapping, "SSJG": lookup}})


def test_an_api_source_takes_no_connection_and_no_read_section(tmp_path: Path) -> None:
    api = variant("kind: sql\nconnection: ehub_src_test\n", "kind: api\n").replace(
        "sql:\n  table: T_TEST\n", ""
    )
    spec = loader.load_spec(write(tmp_path, api))
    assert (spec.kind, spec.connection, spec.inbox.reclaim_after_s) == ("api", None, 600)
    with_conn = variant("kind: sql\n", "kind: api\n").replace("sql:\n  table: T_TEST\n", "")
    assert only_problem(tmp_path, with_conn)[2:] == (
        "connection",
        "kind api takes no connection (records are posted to the hub)",
    )
    pulled_without = variant("connection: ehub_src_test\n", "")
    assert only_problem(tmp_path, pulled_without)[3] == "kind sql needs a connection id"


def test_an_api_source_is_not_pulled(tmp_path: Path) -> None:
    from ehub.errors import ConfigError
    from ehub.sources.build import build_source, describe_connection

    spec = loader.load_spec(Path("sources/market_regulation/issuing_api.yaml"))
    with pytest.raises(ConfigError, match="posted to the hub's API"):
        build_source(spec)
    assert describe_connection(spec) == (
        "posted to POST /v1/sources/market_regulation.issuing_api/licenses"
    )
