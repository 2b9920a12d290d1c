"""Vocabulary of the simulated unified acceptance system (一窗受理): items and code lists.

The department's own code lists are deliberately different from the hub's
canonical codes in ``schemas/codelists/`` (the hub translates them with a code
list in the source's YAML); each constant below names its canonical target.
Counties, names and streets come from :mod:`simulators.market_data`.

Data only: no I/O, no randomness; never imports the hub.
"""

from __future__ import annotations

from dataclasses import dataclass

APPLICANT_TYPES = {"1": "个人", "2": "法人"}
"""SQRLX → canonical applicant_types: ``1`` → ``0`` (natural person), ``2`` → ``1`` (legal entity)."""
APPLICANT_CODE_TYPES = {"SFZ": "居民身份证", "TYXYDM": "统一社会信用代码"}
"""SQRZJLX → canonical holder_code_types: ``SFZ`` → ``111``, ``TYXYDM`` → ``001``."""
CHANNELS = {"PC": "PC端", "CK": "大厅窗口", "YD": "移动端", "ZZ": "自助终端"}
"""SBQD → canonical channels: PC → pc, CK → window, YD → mobile, ZZ → kiosk."""
STATES = {
    "10": "已申报",
    "20": "已受理",
    "21": "不予受理",
    "30": "已审批",
    "40": "已办结",
    "90": "已撤回",
}
"""BJZT → canonical case_states: 10 → submitted, 20 → accepted, 21 → not_accepted,
30 → decided, 40 → completed, 90 → withdrawn."""
RESULTS = {"1": "准予许可", "2": "不予许可", "3": "终止办理", "4": "转报办结"}
"""BJJG → canonical case_results: 1 → granted, 2 → denied, 3 → terminated, 4 → transferred."""
CASE_TYPES = {"JB": "即办件", "CN": "承诺件"}
"""BJLX → canonical case_types: JB → ``1``, CN → ``2``."""

CANONICAL = {
    "SQRLX": {"1": "0", "2": "1"},
    "SQRZJLX": {"SFZ": "111", "TYXYDM": "001"},
    "SBQD": {"PC": "pc", "CK": "window", "YD": "mobile", "ZZ": "kiosk"},
    "BJZT": {
        "10": "submitted",
        "20": "accepted",
        "21": "not_accepted",
        "30": "decided",
        "40": "completed",
        "90": "withdrawn",
    },
    "BJJG": {"1": "granted", "2": "denied", "3": "terminated", "4": "transferred"},
    "BJLX": {"JB": "1", "CN": "2"},
}
"""Department code → canonical code, per column: what the YAML code lists must say."""

UNKNOWN_CHANNELS = ("QT", "WX", "DH")
"""SBQD values absent from the department's list (其他, 微信, 电话): E_CODE_UNKNOWN."""
UNKNOWN_STATES = ("00", "50", "99")
"""BJZT values absent from the department's list: E_CODE_UNKNOWN."""

STATE_WEIGHTS = (("10", 6), ("20", 8), ("21", 5), ("30", 5), ("40", 70), ("90", 6))
RESULT_WEIGHTS = (("1", 85), ("2", 7), ("3", 5), ("4", 3))
CHANNEL_WEIGHTS = (("PC", 40), ("CK", 30), ("YD", 25), ("ZZ", 5))
PHONE_PREFIXES = (
    "130",
    "131",
    "133",
    "135",
    "137",
    "139",
    "150",
    "152",
    "158",
    "177",
    "186",
    "189",
)


@dataclass(frozen=True, slots=True)
class ItemTemplate:
    """A service item (事项) every county's 行政审批服务局 implements."""

    seq: str
    """3-digit item number inside the implementation code."""
    category: str
    """1-digit item category: ``1`` 行政许可, ``2`` 公共服务."""
    name: str
    """SXMC."""
    case_type: str
    """BJLX: ``JB`` 即办件 or ``CN`` 承诺件."""
    promised_days: int
    """CNBJSX (working days; 0 for 即办件)."""
    legal_days: int
    """FDBJSX."""
    applicant: str
    """``P`` persons apply, ``E`` legal entities apply."""
    license_prefix: str | None
    """Prefix of the resulting license number (JGZZBH) when the item issues one."""


ITEMS: tuple[ItemTemplate, ...] = (
    ItemTemplate("001", "1", "食品经营许可证核发（新办）", "CN", 10, 20, "E", "JY"),
    ItemTemplate("002", "1", "个体工商户设立登记", "JB", 0, 15, "P", "GT"),
    ItemTemplate("003", "1", "有限责任公司设立登记", "CN", 3, 15, "E", "ZC"),
    ItemTemplate("004", "1", "建筑工程施工许可证核发", "CN", 7, 15, "E", "SG"),
    ItemTemplate("005", "1", "公共场所卫生许可证核发", "CN", 10, 20, "E", "WS"),
    ItemTemplate("006", "1", "药品零售企业经营许可", "CN", 15, 30, "E", "YL"),
    ItemTemplate("007", "1", "道路货物运输经营许可", "CN", 10, 20, "E", "DY"),
    ItemTemplate("008", "1", "医师执业注册", "CN", 10, 20, "P", "YS"),
    ItemTemplate("009", "1", "出版物零售单位设立审批", "CN", 10, 20, "E", "CB"),
    ItemTemplate("010", "1", "城市建筑垃圾处置核准", "CN", 10, 20, "E", None),
    ItemTemplate("011", "2", "残疾人证新办", "CN", 20, 30, "P", None),
    ItemTemplate("012", "2", "社会保障卡补换", "JB", 0, 5, "P", None),
)

PERSON_ITEMS = tuple(i for i in ITEMS if i.applicant == "P")
ENTITY_ITEMS = tuple(i for i in ITEMS if i.applicant == "E")

OVERSIZE_FILLERS = (
    "委托代理人",
    "共同申请人",
    "原经营场所",
    "变更前名称",
    "分支机构",
    "经营者",
    "法定代表人",
    "联系人",
    "项目负责人",
    "申请事项补充说明",
)
"""Words an oversize applicant name (E_FIELD_TOO_LONG) is padded with."""
