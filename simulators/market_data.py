"""Vocabulary of the simulated market-regulation department: places, names, words.

Only real, long-standing Shandong county-level division codes (GB/T 2260) of
the seed cities are listed; codes that changed recently (e.g. 蓬莱区, 即墨区)
are left out on purpose so the hub's division table is sure to know every code
the simulator emits as valid. ``UNKNOWN_DIVISIONS`` are 6-digit codes that do
not exist (prefecture 99 is not assigned in Shandong).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class County:
    """A county-level division and the prefecture it belongs to."""

    code: str
    """6-digit GB/T 2260 code."""
    name: str
    """County / district / county-level city name."""
    city_code: str
    """6-digit code of the prefecture-level city (``xxxx00``)."""
    city_name: str
    """Prefecture-level city name, with 市."""


_CITIES = {
    "370100": "济南市",
    "370200": "青岛市",
    "370400": "枣庄市",
    "370600": "烟台市",
    "370900": "泰安市",
}

_COUNTY_NAMES = {
    "370102": "历下区",
    "370103": "市中区",
    "370104": "槐荫区",
    "370105": "天桥区",
    "370112": "历城区",
    "370202": "市南区",
    "370203": "市北区",
    "370212": "崂山区",
    "370213": "李沧区",
    "370214": "城阳区",
    "370281": "胶州市",
    "370402": "市中区",
    "370403": "薛城区",
    "370481": "滕州市",
    "370602": "芝罘区",
    "370611": "福山区",
    "370613": "莱山区",
    "370681": "龙口市",
    "370902": "泰山区",
    "370911": "岱岳区",
    "370982": "新泰市",
    "370983": "肥城市",
}

COUNTIES: tuple[County, ...] = tuple(
    County(code, name, code[:4] + "00", _CITIES[code[:4] + "00"])
    for code, name in _COUNTY_NAMES.items()
)
CITY_NAMES: dict[str, str] = dict(_CITIES)
"""Prefecture-level cities, code → name (their bureaus register some enterprises)."""

UNKNOWN_DIVISIONS: tuple[str, ...] = ("379999", "379901", "379902", "379950", "379988")

SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
    "苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史"
)
GIVEN_CHARS = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红建国志强海燕建华文博"
    "子涵浩然欣怡宇轩梓萱俊杰雨泽晨曦思远嘉怡鹏飞晓东立新振华永胜庆丰春梅秋菊凤霞德胜"
)

TRADE_NAMES = (
    "鲁信",
    "海悦",
    "泰和",
    "金鼎",
    "华泰",
    "鑫源",
    "恒达",
    "瑞丰",
    "齐鲁",
    "泉城",
    "宏远",
    "天成",
    "聚福",
    "盛元",
    "润德",
    "新港",
    "东岳",
    "岱宗",
    "蓝海",
    "万通",
    "永盛",
    "佳禾",
    "博远",
    "众诚",
    "正阳",
    "安泰",
    "明德",
    "信合",
    "兴隆",
    "康宁",
    "海润",
    "丰源",
    "益民",
    "广汇",
    "同创",
    "尚品",
)
INDUSTRIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("商贸", ("日用百货销售", "五金产品零售", "服装服饰批发", "食品销售（仅销售预包装食品）")),
    ("科技", ("软件开发", "信息技术咨询服务", "计算机系统服务", "技术服务、技术开发、技术咨询")),
    ("餐饮管理", ("餐饮服务", "餐饮管理", "食品经营")),
    ("建筑工程", ("建设工程施工", "建筑材料销售", "园林绿化工程施工")),
    ("物流", ("道路货物运输（不含危险货物）", "国内货物运输代理", "普通货物仓储服务")),
    ("机械设备", ("通用设备制造", "机械设备销售", "机械设备租赁")),
    ("农业科技", ("农作物种植", "农产品的生产、销售、加工、运输、贮藏", "园艺产品种植")),
    ("文化传媒", ("组织文化艺术交流活动", "广告设计、代理", "会议及展览服务")),
    ("食品", ("食品生产", "食品销售", "农副产品销售")),
    ("医药", ("药品零售", "第二类医疗器械销售", "保健食品销售")),
)
SCOPE_TAIL = "（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"

ENTERPRISE_TYPES: tuple[tuple[str, str, int], ...] = (
    # (QYLX, name suffix, weight)
    ("有限责任公司（自然人投资或控股）", "有限公司", 50),
    ("有限责任公司（自然人独资）", "有限公司", 25),
    ("股份有限公司（非上市、自然人投资或控股）", "股份有限公司", 5),
    ("个人独资企业", "商行", 12),
    ("普通合伙企业", "中心（普通合伙）", 8),
)

STREETS = (
    "解放路",
    "人民路",
    "和平路",
    "建设路",
    "文化路",
    "新华街",
    "胜利街",
    "青年路",
    "中山路",
    "泰山大街",
    "经十路",
    "花园路",
    "幸福街",
    "滨海路",
    "长江路",
    "黄河路",
    "东岳大街",
    "光明街",
    "振兴路",
    "开发区大道",
)
