"""Defect plans (repeats and their originals), defect makers and the content checks."""

from __future__ import annotations

import random
from datetime import date, datetime

import pytest

from simulators.checks import (
    FIELD_LIMIT,
    citizen_id_is_valid,
    has_mojibake,
    is_blank,
    make_citizen_id,
    normalized,
    parse_cn_date,
    parse_timestamp,
    repeat_defects,
)
from simulators.defect_plan import (
    RELATIONAL_KINDS,
    gbk_mojibake,
    mojibake,
    oversize,
    plan_defects,
)

KINDS = ("E_A", "E_B", "E_DUPLICATE", "E_VERSION_CONFLICT")


def test_plan_is_deterministic_and_balanced() -> None:
    a = plan_defects(1000, 0.1, 5, KINDS)
    assert a == plan_defects(1000, 0.1, 5, KINDS)
    assert a != plan_defects(1000, 0.1, 6, KINDS)
    assert a.counts(KINDS) == dict.fromkeys(KINDS, 25)
    assert list(a.kinds) == sorted(a.kinds)


@pytest.mark.parametrize(("count", "rate"), [(100, 0.05), (1000, 0.5), (500, 0.9), (50, 0.3)])
def test_every_repeat_copies_one_earlier_clean_original(count: int, rate: float) -> None:
    for seed in range(5):
        p = plan_defects(count, rate, seed, KINDS)
        repeats = {pos for pos, k in p.kinds.items() if k in RELATIONAL_KINDS}
        assert set(p.originals) == repeats
        assert len(set(p.originals.values())) == len(p.originals)
        for repeat, original in p.originals.items():
            assert 1 <= original < repeat and original not in p.kinds
        assert sum(p.counts(KINDS).values()) == round(count * rate)


def test_repeats_without_clean_rows_become_other_kinds() -> None:
    p = plan_defects(40, 1.0, 1, KINDS)
    assert p.originals == {} and set(p.kinds.values()) == {"E_A", "E_B"}
    assert len(p.kinds) == 40
    with pytest.raises(ValueError, match="clean originals"):
        plan_defects(10, 1.0, 1, ("E_DUPLICATE",))


def test_plan_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="defect_rate"):
        plan_defects(10, -0.1, 0, KINDS)
    with pytest.raises(ValueError, match="count"):
        plan_defects(-1, 0.1, 0, KINDS)


def test_mojibake_makers_are_caught_and_gbk_one_is_encodable() -> None:
    rng = random.Random(3)
    for text in ("张伟", "济南市历下区人民医院", "烟台海悦商贸有限公司", "经十路324号"):
        assert not has_mojibake(text)
        assert has_mojibake(mojibake(text, rng))
        garbled = gbk_mojibake(text)
        assert has_mojibake(garbled) and garbled.encode("gbk")
        assert has_mojibake(normalized(garbled))
    assert gbk_mojibake("经十路324号") == "锟斤拷" * 3 + "324" + "锟斤拷"


def test_oversize_names_are_201_to_400_characters() -> None:
    rng = random.Random(0)
    lengths = {
        len(oversize("烟台海悦商贸有限公司", rng, ("分店", "委托代理人"))) for _ in range(300)
    }
    assert min(lengths) > FIELD_LIMIT and max(lengths) <= 2 * FIELD_LIMIT
    assert len(lengths) > 50


def test_repeat_defects_names_duplicates_and_conflicts() -> None:
    found = repeat_defects(
        [(1, "A", "x"), (2, "B", "y"), (3, "A", "x"), (4, "B", "z"), (5, "C", "x")]
    )
    assert found == {3: "E_DUPLICATE", 4: "E_VERSION_CONFLICT"}


def test_small_parsers() -> None:
    assert parse_cn_date("2019年3月5日") == date(2019, 3, 5)
    assert parse_cn_date("2019年03月05日") == date(2019, 3, 5)
    assert parse_cn_date("2023年2月30日") is None and parse_cn_date("2023年13月5日") is None
    assert parse_cn_date("2023年6月0日") is None and parse_cn_date("") is None
    assert parse_timestamp("2024-02-29 23:59:59") == datetime(2024, 2, 29, 23, 59, 59)
    assert parse_timestamp("2023-02-29 10:00:00") is None
    assert normalized("\u3000３７０１０２ ") == "370102"
    assert is_blank(None) and is_blank("\u3000 ") and not is_blank("张")
    ric = make_citizen_id("370102", date(1985, 7, 1), 123)
    assert citizen_id_is_valid(ric) and ric[:17] == "37010219850701123"
