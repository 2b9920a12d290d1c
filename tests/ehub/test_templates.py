"""License templates: one per onboarded license type, covering every surface field its
source maps, and the display strings they produce."""

from __future__ import annotations

import pytest

from ehub.errors import ConfigError
from ehub.sources.loader import load_all
from ehub.templates import _parse, license_view, template_for, templates

DOC = {
    "ZZBS": "1.2.156.3005.2.11100000000013338W001.11370000MB1234562A.ABC.001.K",
    "ZZLXDM": "11100000000013338W001",
    "ZZMC": "营业执照",
    "ZZBH": "91370102MA3C8X2Y4T",
    "CZZT": "济南示例有限公司",
    "CZZTDM": "91370102MA3C8X2Y4T",
    "ZZBFJG": "济南市市场监督管理局",
    "ZZBFRQ": "2024-05-20",
    "ZZYXQQSRQ": "2024-05-20",
    "ZZYXQJZRQ": None,
    "KZ": {"KZ_JYFW": "软件开发", "KZ_FDDBR": "张三", "KZ_ZS": "", "KZ_EXT_X": "extra"},
}


def test_every_onboarded_license_type_has_a_template_showing_all_its_fields() -> None:
    specs = [s for s in load_all() if s.record_kind == "license"]
    assert specs
    for spec in specs:
        code, _ = spec.license_type_code()
        assert code in templates(), f"{spec.id}: no template for {code}"
        shown = {c for c, _ in templates()[code].fields}
        mapped = {t for t in spec.mapping if t.startswith("KZ_")}
        assert mapped <= shown, f"{spec.id}: fields {mapped - shown} would not be shown"


def test_view_uses_the_type_labels_order_and_chinese_dates() -> None:
    view = license_view(DOC, seal_label="章", verify_url="https://v.test/verify")
    assert view.title == "营业执照"
    assert view.holder_label == "名称" and view.holder_code_label == "统一社会信用代码"
    # template order (法定代表人 before 经营范围), empty values left out, unlisted fields not shown
    assert view.surface == (("法定代表人", "张三"), ("经营范围", "软件开发"))
    assert view.issue_date == "2024年05月20日"
    assert view.validity == "2024年05月20日至长期"
    assert view.verify_url == f"https://v.test/verify/{DOC['ZZBS']}"
    assert license_view(DOC).verify_url == ""


def test_a_type_without_template_gets_the_generic_layout() -> None:
    doc = {**DOC, "ZZLXDM": "11100000000013338W099", "ZZMC": "某某许可证"}
    assert template_for("11100000000013338W099", "某某许可证").fields == ()
    view = license_view(doc)
    assert view.title == "某某许可证" and view.holder_label == "持证主体"
    assert view.surface == (
        ("KZ_EXT_X", "extra"), ("KZ_FDDBR", "张三"), ("KZ_JYFW", "软件开发"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": "x"}, "type_code"),
        ({"type_code": "T", "title": "x", "pades_level": "B-X"}, "pades_level"),
        ({"type_code": "T", "title": "x", "fields": [{"code": "ZZBH", "label": "n"}]}, "KZ_"),
    ],
)
def test_bad_templates_are_refused_with_the_file_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"t.json.*{message}"):
        _parse("t.json", data)
