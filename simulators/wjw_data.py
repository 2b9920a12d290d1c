"""Vocabulary of the simulated provincial health commission (省卫生健康委员会) file drop.

Physician practice certificates (医师执业证书): practice categories and scopes,
institutions, statuses, and the element layout of the delivered XML files.
Counties and names come from :mod:`simulators.market_data`.

Data only: no I/O, no randomness; never imports the hub.
"""

from __future__ import annotations

SENDER = "山东省卫生健康委员会"
FILE_PREFIX = "WJW"

ELEMENTS: tuple[tuple[str, str], ...] = (
    ("JLBH", "记录编号: the record's key in the department system (the hub's source key)"),
    ("ZSBM", "证书编码: 17 digits, category (3) + division (6) + serial (8); the license number"),
    ("XM", "姓名: holder name (required, at most 200 characters)"),
    ("SFZH", "身份证号: holder's 18-char citizen ID (holder code type 111)"),
    ("ZYDD", "执业地点: the medical institution"),
    ("ZYLB", "执业类别: 临床 / 中医 / 口腔 / 公共卫生"),
    ("ZYFW", "执业范围: practice scope"),
    ("FZJG", "发证机关: issuing health bureau"),
    ("FZJGDM", "发证机关代码: issuer USCC"),
    ("FZRQ", "发证日期: YYYY年M月D日"),
    ("YXQQ", "有效期起: YYYY年M月D日 (= FZRQ)"),
    ("YXQZ", "有效期至: YYYY年M月D日"),
    ("QHDM", "区划: 6-digit division of the practice location (GB/T 2260)"),
    ("ZT", "状态: 有效 / 注销 / 吊销"),
)
"""Child elements of ``<Record>``, in schema order, with their meaning."""

FULLWIDTH_FIELDS = ("ZSBM", "SFZH", "FZJGDM", "QHDM", "FZRQ", "YXQQ", "YXQZ")
"""Elements whose digits / Latin letters may be written full-width (０-９, Ａ-Ｚ) in clean records."""
PADDED_FIELDS = ("ZSBM", "XM", "SFZH", "ZYDD", "FZJG", "FZJGDM", "QHDM")
"""Elements that may carry leading / trailing spaces (ASCII or U+3000) in clean records."""

CATEGORIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (执业类别, 3-digit code in ZSBM, 执业范围 choices)
    (
        "临床",
        "110",
        (
            "内科专业",
            "外科专业",
            "妇产科专业",
            "儿科专业",
            "眼耳鼻咽喉科专业",
            "皮肤病与性病专业",
            "精神卫生专业",
            "医学影像和放射治疗专业",
            "急救医学专业",
            "全科医学专业",
        ),
    ),
    ("中医", "210", ("中医专业", "中西医结合专业", "全科医学专业")),
    ("口腔", "310", ("口腔专业",)),
    ("公共卫生", "410", ("公共卫生类别专业",)),
)
CATEGORY_WEIGHTS = (70, 15, 10, 5)

INSTITUTIONS = {
    "临床": ("人民医院", "妇幼保健院", "第二人民医院", "社区卫生服务中心"),
    "中医": ("中医医院", "中医院国医堂"),
    "口腔": ("口腔医院", "人民医院"),
    "公共卫生": ("疾病预防控制中心", "卫生健康综合执法大队"),
}
"""Institution name endings per category; prefixed with the county's name."""

STATUSES = (("有效", 85), ("注销", 12), ("吊销", 3))
UNKNOWN_STATUSES = ("暂停", "待审核", "作废", "失效")
"""ZT values outside the department's list: E_CODE_UNKNOWN."""

OVERSIZE_FILLERS = (
    "曾用名",
    "多点执业备案",
    "进修",
    "规范化培训",
    "执业助理医师",
    "注册变更",
    "备注",
    "主要执业机构",
)
"""Words an oversize holder name (E_FIELD_TOO_LONG) is padded with."""
