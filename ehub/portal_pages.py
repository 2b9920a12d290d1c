"""The HTML of the office portal (:mod:`ehub.office_portal`): server-rendered pages in Chinese.

Every value that reaches a page goes through :func:`esc` (text and attribute
values alike); the only markup here is the module's own. The stylesheet is
inline and its hash is given to the Content-Security-Policy, so a page loads
nothing else: no script, no image, no font, no CDN. This module renders only;
it must not read the store or decide who may see what.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

STYLE = (
    "body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:0;color:#222}"
    "header{background:#8b1a1a;color:#fff;padding:.6em 1.2em;display:flex;"
    "justify-content:space-between;align-items:center}"
    "header a{color:#fff}main{padding:1em 1.2em}h1{font-size:1.3em;margin:0}"
    "form.filters{display:flex;flex-wrap:wrap;gap:.6em 1.2em;align-items:end;"
    "background:#f6f6f6;padding:.8em;border:1px solid #ddd}"
    "label{display:flex;flex-direction:column;font-size:.9em}"
    "input,select,button{font-size:1em;padding:.25em}"
    ".wrap{overflow-x:auto;margin-top:1em}table{border-collapse:collapse;font-size:.85em}"
    "th,td{border:1px solid #ccc;padding:.3em .5em;white-space:nowrap;text-align:left}"
    "th{background:#eee}.error{color:#a00;font-weight:bold}.muted{color:#666}"
    "nav.pages,p.downloads{margin:.8em 0}nav.pages a,p.downloads a{margin-right:1.2em}"
    ".login{max-width:24em;margin:4em auto;border:1px solid #ddd;padding:1.5em}"
    ".login label{margin-bottom:.8em}"
)
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
#: Sent with every portal page: nothing but the inline stylesheet may load.
CSP = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

KIND_ZH = {"license": "证照", "case": "办件"}


def esc(value: Any) -> str:
    """A value as page text or attribute value (quotes escaped too)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    return html.escape(str(value), quote=True)


def layout(title: str, body: str, *, office: str = "") -> str:
    right = (
        f'<span>{esc(office)}　<a href="/portal/logout" id="logout">退出登录</a></span>'
        if office
        else ""
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{esc(title)} - 数据属地返还</title><style>{STYLE}</style></head><body>"
        f"<header><h1>数据属地返还 · 基层办公室</h1>{right}</header>"
        f"<main>{body}</main></body></html>"
    )


def login_page(*, nonce: str, code: str = "", error: str = "", next_url: str = "") -> str:
    err = f'<p class="error" id="error">{esc(error)}</p>' if error else ""
    body = (
        '<form class="login" method="post" action="/portal/login">'
        "<h2>办公室登录</h2>"
        f"{err}"
        f'<input type="hidden" name="nonce" value="{esc(nonce)}">'
        f'<input type="hidden" name="next" value="{esc(next_url)}">'
        '<label>办公室代码<input name="code" id="code" required autocomplete="username" '
        f'value="{esc(code)}"></label>'
        '<label>凭证<input name="credential" id="credential" type="password" required '
        'autocomplete="current-password"></label>'
        '<button type="submit" id="login">登录</button>'
        "</form>"
    )
    return layout("登录", body)


def message_page(title: str, message: str, *, office: str = "", link: str = "") -> str:
    back = f'<p><a href="{esc(link)}">返回</a></p>' if link else ""
    return layout(title, f'<h2 id="title">{esc(title)}</h2><p id="message">{esc(message)}</p>'
                  f"{back}", office=office)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FilterForm:
    """What the filter form shows: the office's choices and the current values."""

    kinds: Sequence[str]
    license_types: Sequence[tuple[str, str]]
    """(code, Chinese name) of the types the office may filter by."""
    values: Mapping[str, str]
    """The current query parameters (kind, type, from, to, q)."""


def _select(name: str, label: str, options: Iterable[tuple[str, str]], current: str) -> str:
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == current else ""}>{esc(t)}</option>'
        for v, t in options
    )
    return f'<label>{esc(label)}<select name="{name}" id="f-{name}">{opts}</select></label>'


def _input(name: str, label: str, value: str, kind: str = "text") -> str:
    return (
        f'<label>{esc(label)}<input type="{kind}" name="{name}" id="f-{name}" '
        f'value="{esc(value)}"></label>'
    )


def filter_form(action: str, form: FilterForm) -> str:
    v = form.values
    kinds = _select("kind", "记录类别", [(k, KIND_ZH.get(k, k)) for k in form.kinds],
                    v.get("kind", ""))  # fmt: skip
    types = _select("type", "证照类型",
                    [("", "全部"), *((c, f"{n}（{c}）") for c, n in form.license_types)],
                    v.get("type", ""))  # fmt: skip
    return (
        f'<form class="filters" method="get" action="{esc(action)}" id="filters">'
        f"{kinds}{types}"
        f"{_input('from', '发布日期（起）', v.get('from', ''), 'date')}"
        f"{_input('to', '发布日期（止）', v.get('to', ''), 'date')}"
        f"{_input('q', '标识', v.get('q', ''))}"
        '<button type="submit" id="search">查询</button>'
        f'<a href="{esc(action)}" id="reset">重置</a></form>'
    )


def records_page(
    *,
    office_label: str,
    action: str,
    export_url: str,
    form: FilterForm,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Mapping[str, Any]],
    next_after: int | None,
    first_page: bool,
    error: str = "",
) -> str:
    """The records table. ``columns``: (key, Chinese label); ``next_after``: the cursor
    of the next page, None on the last one."""
    query = {k: val for k, val in form.values.items() if val}
    downloads = (
        '<p class="downloads">'
        f'<a id="export-csv" href="{esc(export_url + "?" + urlencode({**query, "format": "csv"}))}">'
        "下载 CSV</a>"
        f'<a id="export-xlsx" href="{esc(export_url + "?" + urlencode({**query, "format": "xlsx"}))}">'
        "下载 XLSX</a></p>"
    )
    err = f'<p class="error" id="error">{esc(error)}</p>' if error else ""
    if rows:
        head = "".join(f"<th>{esc(label)}</th>" for _, label in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(r.get(key))}</td>" for key, _ in columns) + "</tr>"
            for r in rows
        )
        table = (
            f'<div class="wrap"><table id="records"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )
    else:
        table = '<p class="muted" id="empty">没有符合条件的记录。</p>'
    pages = []
    if not first_page:
        pages.append(f'<a id="first" href="{esc(action + "?" + urlencode(query))}">首页</a>')
    if next_after is not None:
        nxt = urlencode({**query, "after": str(next_after)})
        pages.append(f'<a id="next" href="{esc(action + "?" + nxt)}">下一页</a>')
    nav = f'<nav class="pages">{"".join(pages)}</nav>' if pages else ""
    count = f'<p class="muted" id="count">本页 {len(rows)} 条</p>'
    return layout("返还记录", filter_form(action, form) + err + downloads + count + table + nav,
                  office=office_label)  # fmt: skip
