"""The operators' dashboard (数字驾驶舱): one HTML page rendered on the server.

Shows the national evaluation indicators and the operations breakdowns of
:mod:`ehub.indicators` — per department, per license type and over time — as
charts (inline SVG drawn here: the page loads nothing from anywhere, no script,
no CDN, no web font) with the figures in tables beside them. Every indicator
element carries ``data-indicator="<name>"`` and every bar or point
``data-label`` / ``data-value``, so a test (or a scraper) finds them without
parsing the text.

Pure rendering: it reads the store through :mod:`ehub.indicators` only and
never writes. Links are relative, so the page works wherever the hub app is
mounted (``/ehub`` inside the Airflow API server, ``/`` standalone).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ehub import indicators as ind
from ehub import indicators_ops as ops
from ehub.store.db import Store

#: Periods the filter offers, in days (0: everything).
PERIODS = (("7", "近 7 天"), ("30", "近 30 天"), ("90", "近 90 天"), ("0", "全部"))
COLORS = ("#1f6fb2", "#d9822b", "#2a9d5c", "#b23b3b", "#7b5ea7", "#5c6b73")
DESTINATIONS_ZH = {"provincial": "省级平台", "national": "全国平台"}
KINDS_ZH = {"license": "证照", "case": "办件", "seal": "印章"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} 秒"


def filters_from(department: str = "", license_type: str = "", days: str = "30") -> ind.Filters:
    """The filters of a dashboard request (empty = all; ``days`` 0 = no time limit)."""
    try:
        n = max(int(days), 0)
    except ValueError:
        n = 30
    since = datetime.now(UTC) - timedelta(days=n) if n else None
    return ind.Filters(department or None, license_type or None, since)


# --- charts ------------------------------------------------------------------------


def bar_chart(
    name: str,
    title: str,
    items: Sequence[tuple[str, float | None]],
    *,
    fmt: Callable[[float | None], str] = lambda v: "—" if v is None else f"{v:g}",
    scale_max: float | None = None,
) -> str:
    """A horizontal bar chart as inline SVG: one bar per (label, value)."""
    row_h, label_w, bar_w, pad = 24, 190, 330, 8
    height = pad * 2 + row_h * max(len(items), 1) + 20
    width = label_w + bar_w + 90
    top = max([v for _, v in items if v is not None] + [scale_max or 0.0]) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{esc(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>'
    ]
    if not items:
        parts.append(f'<text x="{pad}" y="{pad + 16}" class="empty">暂无数据</text>')
    for i, (label, value) in enumerate(items):
        y = pad + i * row_h
        w = 0 if value is None else max(bar_w * value / top, 1 if value else 0)
        color = COLORS[0]
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{esc(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" '
            f'fill="{color}" data-label="{esc(label)}" data-value="{"" if value is None else value}">'
            f"<title>{esc(label)}：{esc(fmt(value))}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{esc(fmt(value))}</text>'
        )
    parts.append("</svg>")
    return _figure(title, "".join(parts))


def line_chart(
    name: str, title: str, xs: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]
) -> str:
    """A line chart as inline SVG: one line per (series name, values over ``xs``)."""
    width, height = 680, 260
    left, right, top_m, bottom = 48, 16, 28, 40
    plot_w, plot_h = width - left - right, height - top_m - bottom
    top = max([v for _, vs in series for v in vs] + [1.0])
    step = plot_w / max(len(xs) - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if len(xs) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top_m + plot_h - plot_h * v / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{esc(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>',
        f'<line x1="{left}" y1="{top_m + plot_h}" x2="{width - right}" y2="{top_m + plot_h}" '
        'stroke="#999"/>',
        f'<line x1="{left}" y1="{top_m}" x2="{left}" y2="{top_m + plot_h}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{top_m + 4}" text-anchor="end">{top:g}</text>',
        f'<text x="{left - 6}" y="{top_m + plot_h}" text-anchor="end">0</text>',
    ]
    if not xs:
        parts.append(f'<text x="{left + 10}" y="{top_m + 20}" class="empty">暂无数据</text>')
    ticks = sorted({0, len(xs) - 1, *range(0, len(xs), max(len(xs) // 6, 1))}) if xs else []
    for i in ticks:
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{esc(xs[i][5:])}</text>"
        )
    for n, (label, values) in enumerate(series):
        color = COLORS[n % len(COLORS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline class="line" fill="none" stroke="{color}" stroke-width="2" '
            f'points="{points}" data-series="{esc(label)}"/>'
        )
        parts += [
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{color}" '
            f'data-series="{esc(label)}" data-label="{esc(xs[i])}" data-value="{v:g}">'
            f"<title>{esc(label)} {esc(xs[i])}：{v:g}</title></circle>"
            for i, v in enumerate(values)
        ]
        lx = left + 8 + n * 110
        parts.append(
            f'<rect x="{lx}" y="6" width="12" height="12" fill="{color}"/>'
            f'<text x="{lx + 16}" y="16">{esc(label)}</text>'
        )
    parts.append("</svg>")
    return _figure(title, "".join(parts))


def _figure(title: str, svg: str) -> str:
    return f'<figure class="chart"><figcaption>{esc(title)}</figcaption>{svg}</figure>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, name: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="empty">暂无数据</td></tr>'
    attr = f' data-table="{esc(name)}"' if name else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- the page ----------------------------------------------------------------------


def _kpis(indicators: Sequence[ind.Indicator]) -> str:
    cards = []
    for i in indicators:
        detail = i.note_zh
        if i.unit == "share":
            detail = f"{i.numerator} / {i.denominator or 0}" + (
                f"（{i.note_zh}）" if i.note_zh else ""
            )
        value = "" if i.value is None else f"{i.value:g}" if i.unit == "share" else str(i.value)
        cards.append(
            f'<div class="kpi" data-indicator="{esc(i.name)}" data-value="{esc(value)}" '
            f'data-numerator="{i.numerator}" data-denominator="{i.denominator or ""}">'
            f'<div class="kpi-label">{esc(i.label_zh)}</div>'
            f'<div class="kpi-value">{esc(i.display())}</div>'
            f'<div class="kpi-detail">{esc(detail)}</div></div>'
        )
    return (
        '<section id="indicators"><h2>全国评估指标</h2><div class="kpis">'
        + "".join(cards)
        + "</div></section>"
    )


def _filter_form(store: Store, department: str, license_type: str, days: str) -> str:
    def options(choices: Sequence[tuple[str, str]], chosen: str) -> str:
        return "".join(
            f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(t)}</option>'
            for v, t in choices
        )

    depts = [("", "全部部门")] + [(d, d) for d in ind.departments(store)]
    types = [("", "全部证照类型"), *ind.license_types(store)]
    return (
        '<form class="filters" method="get" action="dashboard">'
        f'<label>部门 <select name="department">{options(depts, department)}</select></label> '
        f'<label>证照类型 <select name="license_type">{options(types, license_type)}</select></label> '
        f'<label>时间 <select name="days">{options(PERIODS, days)}</select></label> '
        '<button type="submit">筛选</button></form>'
    )


def render(store: Store, *, department: str = "", license_type: str = "", days: str = "30") -> str:
    """The whole dashboard page for the given filters."""
    f = filters_from(department, license_type, days)
    national = ind.national(store)
    depts = ind.by_department(store, f)
    types = ind.by_license_type(store, f)
    reasons = ind.quarantine_reasons(store, f)
    days_ = ind.daily(store, f)
    plats = ops.platforms(store, f)
    recon = ops.reconciliations(store)
    lags = ops.feed_lag(store)

    xs = [d.day for d in days_]
    trend = line_chart("daily", "每日趋势", xs, [
        ("抽取", [d.extracted for d in days_]), ("隔离", [d.quarantined for d in days_]),
        ("签章", [d.sealed for d in days_]), ("交付", [d.delivered for d in days_]),
    ])  # fmt: skip
    sections = [
        _kpis(national),
        _filter_form(store, department, license_type, days),
        _section("departments", "按部门", [
            bar_chart("department_extracted", "各部门抽取记录数", [(d.department, d.extracted) for d in depts]),
            bar_chart("department_sealed_share", "各部门证照签章率",
                      [(d.department, d.sealed_share) for d in depts], fmt=pct, scale_max=1.0),
            table(["部门", "抽取", "入库", "隔离", "证照", "已签章", "签章率", "办件"],
                  [(d.department, d.extracted, d.normalized, d.quarantined, d.licenses, d.sealed,
                    pct(d.sealed_share), d.cases) for d in depts], name="departments"),
        ]),
        _section("license-types", "按证照类型", [
            bar_chart("type_licenses", "各类型证照数", [(t.name_zh, t.licenses) for t in types]),
            bar_chart("type_sealed_share", "各类型签章率", [(t.name_zh, t.sealed_share) for t in types],
                      fmt=pct, scale_max=1.0),
            table(["证照类型代码", "证照类型", "证照", "已签章", "签章率"],
                  [(t.type_code, t.name_zh, t.licenses, t.sealed, pct(t.sealed_share)) for t in types],
                  name="license_types"),
        ]),
        _section("trend", "趋势", [trend, table(
            ["日期", "抽取", "隔离", "签章", "交付"],
            [(d.day, d.extracted, d.quarantined, d.sealed, d.delivered) for d in days_],
            name="daily")]),
        _section("quarantine", "隔离原因", [
            bar_chart("quarantine_reasons", "按原因隔离的记录数", [(r.name_zh, r.records) for r in reasons]),
            table(["原因代码", "原因", "记录数"], [(r.reason_code, r.name_zh, r.records) for r in reasons],
                  name="quarantine_reasons"),
        ]),
        _section("platforms", "平台交付", [
            bar_chart("platform_delivered_share", "各平台交付率",
                      [(_dest(p.destination), p.delivered_share) for p in plats], fmt=pct, scale_max=1.0),
            bar_chart("platform_latency_p95", "交付时延 P95（秒）",
                      [(_dest(p.destination), p.p95_latency_s) for p in plats], fmt=secs),
            table(["平台", "总数", "已交付", "待交付", "被退回", "死信", "交付率", "时延 P50", "时延 P95"],
                  [(_dest(p.destination), p.total, p.delivered, p.pending, p.rejected, p.dead,
                    pct(p.delivered_share), secs(p.p50_latency_s), secs(p.p95_latency_s))
                   for p in plats], name="platforms"),
        ]),
        _section("reconciliation", "对账差异", [
            line_chart("reconciliation", "对账差异（平台缺失 / 枢纽未发送）",
                       [f"{r.day} {_dest(r.destination)}{KINDS_ZH.get(r.kind, r.kind)}" for r in recon],
                       [("平台缺失", [r.missing for r in recon]),
                        ("枢纽未发送", [r.unknown_to_hub for r in recon])]),
            table(["业务日", "平台", "类别", "枢纽数", "平台数", "平台缺失", "枢纽未发送", "一致"],
                  [(r.day, _dest(r.destination), KINDS_ZH.get(r.kind, r.kind), r.hub_count,
                    r.platform_count, r.missing, r.unknown_to_hub, "是" if r.matched else "否")
                   for r in recon], name="reconciliation"),
        ]),
        _section("feeds", "属地返还时效", [
            bar_chart("office_lag_p95", "各单位返还时延 P95（秒）",
                      [(o.name, o.p95_lag_s) for o in lags], fmt=secs),
            table(["单位代码", "单位", "已发布", "待发布", "最久等待", "时延 P95"],
                  [(o.office, o.name, o.published, o.pending, secs(o.oldest_pending_s),
                    secs(o.p95_lag_s)) for o in lags], name="feed_lag"),
        ]),
    ]  # fmt: skip
    return page("数字驾驶舱", "".join(sections), logout=True)


def _dest(code: str) -> str:
    return DESTINATIONS_ZH.get(code, code)


def _section(anchor: str, title: str, parts: Sequence[str]) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>' + "".join(parts) + "</section>"


def login_page(message: str = "") -> str:
    """The operator's sign-in form (a bearer token of ``EHUB_API_TOKENS``)."""
    note = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    body = (
        f'{note}<form method="post" action="login" class="login">'
        '<label>运维令牌 <input type="password" name="token" id="token" '
        'autocomplete="current-password" required></label> '
        '<button type="submit" id="sign-in">登录</button></form>'
        "<p>令牌由管理员签发，仅其 SHA-256 摘要配置在 EHUB_API_TOKENS 中。</p>"
    )
    return page("数字驾驶舱 · 登录", body)


_CSS = (
    "body{font-family:'Noto Sans CJK SC','AR PL SungtiL GB',sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em}"
    ".kpis{display:flex;flex-wrap:wrap;gap:.8em}.kpi{border:1px solid #ccd;border-radius:6px;"
    "padding:.6em .9em;min-width:13em;background:#f7f9fc}.kpi-label{font-size:.9em;color:#445}"
    ".kpi-value{font-size:1.8em;font-weight:bold;color:#1f6fb2}.kpi-detail{font-size:.8em;color:#667}"
    "figure.chart{margin:.8em 0}figcaption{font-weight:bold;font-size:.95em}"
    "svg.chart{display:block;margin:.3em 0;font-size:12px}svg.chart text{fill:#333}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
    "th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#f0f2f5}"
    ".empty{color:#888}.error{color:#a00}.filters{margin:1em 0}header{display:flex;"
    "justify-content:space-between;align-items:center}"
)


def page(title: str, body: str, *, logout: bool = False) -> str:
    out = (
        '<form method="post" action="logout"><button type="submit" id="sign-out">退出</button></form>'
        if logout
        else ""
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head><body><header><h1>{esc(title)}</h1>{out}</header>"
        f"{body}</body></html>"
    )
