"""REST source: incremental, paginated reads of a department HTTP API (httpx).

:class:`RestSource` implements :class:`connectors.source.Source` for an API that
returns JSON pages of records filtered by an "updated since" query parameter.
:class:`RestLookup` resolves one value per key from an endpoint (mapping
lookups such as ``/api/v1/orgs/{key}`` → name), cached, with the same auth and
retries.

Cursor (the watermark the hub stores), a JSON object::

    {"since": <version of the last committed record>, "key": <its key>}

Each request sends ``<since_param>=<since>`` and the connector skips, client
side, every item whose ``(version, key)`` is not greater than the cursor's. This
needs the API to filter *inclusively* (``version >= since``) and to return items
sorted by version then key; items out of that order fail the run
(:class:`SourceRejected`) instead of silently risking a gap. With ``page``
pagination the connector re-anchors ``since`` on the last record read whenever
the version moved (and pages forward through equal versions only), so records
updated during a run cannot shift an unread record onto a page already read.
Versions and keys keep their JSON type: numbers compare as numbers, strings as
strings (ISO-8601 timestamps of one format compare correctly).

Errors: 401/403 → :class:`SourceRejected` (renew the Airflow connection); other
4xx and undecodable bodies → :class:`SourceRejected`; connect errors, timeouts,
5xx and 429 are retried (``Retry-After`` honoured, capped; exponential backoff
otherwise) and become :class:`SourceUnavailable` once retries are exhausted.

Must not import Airflow, log the token, or log record contents.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from connectors.errors import SourceRejected, SourceUnavailable
from connectors.source import SourceBatch, SourceRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RestClientSpec:
    """Where a department API is and how to authenticate and retry."""

    name: str
    """Source id, used in every message (``<department>.<source>``)."""
    base_url: str
    """Scheme, host and optional path prefix (``https://dept.example/api``)."""
    token: str = field(default="", repr=False)
    """Secret token from the Airflow connection; never logged, never in repr."""
    conn_id: str = ""
    """Airflow connection id holding the token (named in credential errors)."""
    auth_header: str = "Authorization"
    """Header carrying the token."""
    auth_scheme: str = "Bearer"
    """Prefix of the header value (``Bearer <token>``); empty sends the bare token."""
    timeout_s: float = 30.0
    """Connect/read timeout of one request."""
    max_retries: int = 5
    """Retries of one request after 429, 5xx, timeouts and connect errors."""
    backoff_s: float = 0.5
    """First backoff delay; doubles per retry up to ``max_backoff_s``."""
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0
    """Cap on a server's ``Retry-After``."""
    verify: bool | str = True
    """TLS verification: True, False, or a CA bundle path."""


@dataclass(frozen=True, kw_only=True)
class RestSourceSpec(RestClientSpec):
    """What to read from the API and how to page through it."""

    path: str
    """Path of the record list, relative to ``base_url`` (``/api/v1/permits``)."""
    records_path: str = "data.items"
    """Dotted path of the record list in each response body."""
    key_field: str = "id"
    """Dotted path of the record key in an item."""
    version_field: str = "updated_at"
    """Dotted path of the item's change marker (update time or sequence)."""
    since_param: str | None = "updated_since"
    """Query parameter that receives the cursor's version (None: full read each run)."""
    start: str | int | None = None
    """Version to start from on the first run (None: everything)."""
    pagination: Literal["page", "cursor"] = "page"
    page_param: str = "page"
    page_size_param: str = "page_size"
    page_size: int = 100
    """Items per page; at most the API's own maximum (a short page ends the run)."""
    first_page: int = 1
    next_cursor_path: str = "meta.next_cursor"
    """Dotted path of the next-page token in the body (pagination ``cursor``)."""
    cursor_param: str = "cursor"
    """Query parameter that sends the next-page token back."""
    params: Mapping[str, str] = field(default_factory=dict)
    """Constant query parameters (filters, sort order)."""
    batch_size: int = 200


@dataclass(frozen=True, kw_only=True)
class RestLookupSpec(RestClientSpec):
    """Endpoints resolving a key to a value (``/api/v1/orgs/{key}`` → ``data.name``)."""

    path_template: str | None = None
    """Default path with a ``{key}`` placeholder (the key is URL-quoted)."""
    value_path: str | None = None
    """Default dotted path of the wanted value in the response (None: whole body)."""
    cache_size: int = 10_000
    """Most keys kept in the LRU cache (404s are cached too)."""


def dig(obj: Any, path: str | None) -> Any:
    """Value at a dotted path (``data.items``, ``rows.0.id``); None when absent."""
    if not path:
        return obj
    for part in path.split("."):
        if isinstance(obj, Mapping):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


class _Http:
    """One httpx client with auth, retries and error translation."""

    def __init__(
        self,
        spec: RestClientSpec,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.spec = spec
        self._sleep = sleep
        value = f"{spec.auth_scheme} {spec.token}" if spec.auth_scheme else spec.token
        headers = {spec.auth_header: value, "Accept": "application/json"} if spec.token else {}
        self._client = httpx.Client(
            base_url=spec.base_url,
            headers=headers,
            timeout=spec.timeout_s,
            transport=transport,
            verify=spec.verify,
        )

    def get(
        self,
        path: str,
        params: Mapping[str, Any],
        what: str,
        *,
        shown: str | None = None,
        missing_ok: bool = False,
    ) -> tuple[int, Any]:
        """GET with retries → (status, JSON body); a 404 gives (404, None) when
        ``missing_ok``. ``shown`` replaces ``path`` in messages and logs (a template
        hides the key). The caller logs the call; failed attempts are logged here."""
        s = self.spec
        where = f"source {s.name}: GET {shown or path} ({what})"
        for attempt in range(s.max_retries + 1):
            last = attempt == s.max_retries
            try:
                resp = self._client.get(path, params=dict(params))
            except httpx.TransportError as exc:  # connect errors, timeouts, protocol errors
                log.warning("%s failed: %s (attempt %d)", where, type(exc).__name__, attempt + 1)
                if last:
                    raise SourceUnavailable(
                        f"{where}: {type(exc).__name__} after {attempt + 1} attempts ({exc}); "
                        f"check that {s.base_url} is reachable, then re-run"
                    ) from exc
                self._sleep(self._backoff(attempt))
                continue
            code = resp.status_code
            if code == 404 and missing_ok:
                return code, None
            if code < 300:
                try:
                    return code, resp.json()
                except ValueError as exc:
                    raise SourceRejected(
                        f"{where}: the answer ({resp.headers.get('content-type', 'no type')}) "
                        "is not JSON; check base_url and path in the source spec"
                    ) from exc
            if code in (401, 403):
                conn = f"the Airflow connection {s.conn_id}" if s.conn_id else "the token"
                raise SourceRejected(
                    f"{where}: HTTP {code}, token expired or rejected; renew {conn} and re-run"
                )
            if code == 429 or code >= 500:
                log.warning("%s -> HTTP %d (attempt %d)", where, code, attempt + 1)
                if last:
                    raise SourceUnavailable(
                        f"{where}: HTTP {code} after {attempt + 1} attempts; "
                        + (
                            "the API keeps rate-limiting; lower the schedule frequency or "
                            "page size, then re-run"
                            if code == 429
                            else "the department system is failing; re-run when it is back"
                        )
                    )
                delay = self._retry_after(resp) if code == 429 else None
                self._sleep(delay if delay is not None else self._backoff(attempt))
                continue
            raise SourceRejected(
                f"{where}: HTTP {code}; check the source spec (base_url, path, parameters) "
                "against the department's API documentation"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        return float(min(self.spec.backoff_s * 2**attempt, self.spec.max_backoff_s))

    def _retry_after(self, resp: httpx.Response) -> float | None:
        raw = resp.headers.get("Retry-After")
        if raw is None:
            return None
        try:
            delay = float(raw)
        except ValueError:
            try:
                delay = parsedate_to_datetime(raw).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
        return float(min(max(delay, 0.0), self.spec.max_retry_after_s))

    def close(self) -> None:
        self._client.close()


def _order(value: Any) -> tuple[int, Any]:
    """Sort key keeping JSON types apart: numbers numerically, strings lexically."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return (1, str(value))
    return (0, value)


class RestSource:
    """Incremental reader of one API collection. See the module docstring for the cursor."""

    def __init__(
        self,
        spec: RestSourceSpec,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._http = _Http(spec, transport, sleep)
        self._transport, self._sleep = transport, sleep
        self._lookup: RestLookup | None = None

    def lookup_client(self) -> RestLookup:
        """A :class:`RestLookup` on the same API with the same auth and retries."""
        if self._lookup is None:
            same = {f.name: getattr(self.spec, f.name) for f in fields(RestClientSpec)}
            self._lookup = RestLookup(
                RestLookupSpec(**same), transport=self._transport, sleep=self._sleep
            )
        return self._lookup

    def read(self, cursor: str | None) -> Iterator[SourceBatch]:
        """Yield batches of the items changed after ``cursor`` (all when None)."""
        s = self.spec
        since, last_key = self._parse(cursor)
        mark = (_order(since), _order(last_key)) if since is not None else None
        query_since = since if since is not None else s.start
        page, token, pages = s.first_page, None, 0
        continuation = run_fresh = False
        records: list[SourceRecord] = []
        while True:
            params: dict[str, Any] = {**s.params, s.page_size_param: s.page_size}
            if s.since_param and query_since is not None:
                params[s.since_param] = query_since
            if s.pagination == "page":
                params[s.page_param] = page
            elif token is not None:
                params[s.cursor_param] = token
            what = f"page {page}" if s.pagination == "page" else f"page {pages + 1}"
            _, body = self._http.get(s.path, params, what)
            items = dig(body, s.records_path)
            if not isinstance(items, list):
                raise SourceRejected(
                    f"source {s.name}: response to GET {s.path} ({what}) has no list at "
                    f"{s.records_path!r}; fix records_path in the source spec"
                )
            pages += 1
            fresh, logged = 0, (s.name, s.path, what, query_since, len(items))
            for i, item in enumerate(items):
                rec, order = self._record(item, f"{what}, item {i}")
                if mark is not None and order <= mark:
                    # Before this run's first new item, items at or below the stored
                    # cursor are expected (inclusive filter); after it, going back is not.
                    if order < mark and (fresh or (continuation and run_fresh)):
                        raise SourceRejected(
                            f"source {s.name}: GET {s.path} ({what}) returned item {i} "
                            f"(key {rec.key}) out of (version, key) order; the API must sort "
                            f"by {s.version_field} then {s.key_field} (add a sort parameter "
                            "to the spec's params)"
                        )
                    continue
                mark, fresh = order, fresh + 1
                records.append(rec)
                if len(records) == s.batch_size:
                    yield self._batch(records)
                    records = []
            log.info("source %s: GET %s (%s, since %s) -> %d items, %d new", *logged, fresh)
            run_fresh = run_fresh or fresh > 0
            continuation = True
            if s.pagination == "cursor":
                token = dig(body, s.next_cursor_path)
                if not items or token in (None, ""):
                    break
                continue
            if len(items) < s.page_size:
                break
            if mark is not None and s.since_param and mark[0][1] != query_since:
                # Re-anchor on the last version read: pages already read cannot shift.
                query_since, page, continuation = mark[0][1], s.first_page, False
            else:
                page += 1
        if records:
            yield self._batch(records)

    def _record(self, item: Any, where: str) -> tuple[SourceRecord, tuple[Any, Any]]:
        s = self.spec
        if not isinstance(item, dict):
            raise SourceRejected(
                f"source {s.name}: {where} is a {type(item).__name__}, not a JSON object; "
                "fix records_path in the source spec"
            )
        key, version = dig(item, s.key_field), dig(item, s.version_field)
        for label, path, value in (
            ("key", s.key_field, key),
            ("version", s.version_field, version),
        ):
            if value is None or isinstance(value, dict | list) or value == "":
                raise SourceRejected(
                    f"source {s.name}: {where} has no scalar {label} at {path!r}; fix "
                    f"{label}_field in the source spec or ask the department to fill it"
                )
        rec = SourceRecord(key=str(key), version=str(version), payload=item)
        return rec, (_order(version), _order(key))

    def _batch(self, records: list[SourceRecord]) -> SourceBatch:
        last = records[-1].payload
        since, key = dig(last, self.spec.version_field), dig(last, self.spec.key_field)
        cursor = json.dumps({"since": since, "key": key}, ensure_ascii=False)
        return SourceBatch(records=records, cursor=cursor)

    def _parse(self, cursor: str | None) -> tuple[Any, Any]:
        if not cursor:
            return None, None
        try:
            data = json.loads(cursor)
            return data["since"], data["key"]
        except (ValueError, TypeError, KeyError) as exc:
            raise SourceRejected(
                f"source {self.spec.name}: stored cursor {cursor[:80]!r} is not a REST cursor "
                '{"since": ..., "key": ...}; reset the source\'s watermark'
            ) from exc

    def commit(self, batch: SourceBatch) -> None:
        """Nothing to do at the source: the hub's stored cursor is the watermark."""

    def close(self) -> None:
        self._http.close()
        if self._lookup is not None:
            self._lookup.close()


class RestLookup:
    """``get(template, key, value_path)`` → value at ``value_path`` of ``GET <template
    with key>``; ``lookup(key)`` uses the spec's template. LRU-cached per (template, key).

    A 404 (unknown key) or a missing value gives None; other errors raise like
    :class:`RestSource`.
    """

    def __init__(
        self,
        spec: RestLookupSpec,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        if spec.path_template is not None:
            self._check(spec.path_template)
        self._http = _Http(spec, transport, sleep)
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.calls = 0
        """Requests made (cache misses); for tests and run statistics."""

    def lookup(self, key: str, value_path: str | None = None) -> Any:
        """The value at ``value_path`` (default: the spec's) for ``key``; None when absent."""
        template = self._check(self.spec.path_template)
        return self.get(template, key, value_path or self.spec.value_path)

    def get(self, template: str, key: str, value_path: str | None = None) -> Any:
        """The value at ``value_path`` (None: the whole body) of ``template`` for ``key``."""
        ck = (self._check(template), str(key))
        if ck in self._cache:
            self._cache.move_to_end(ck)
            return dig(self._cache[ck], value_path)
        self.calls += 1
        url = template.replace("{key}", quote(ck[1], safe=""))
        code, body = self._http.get(url, {}, "lookup", shown=template, missing_ok=True)
        log.info(
            "source %s: GET %s -> HTTP %d (lookup %d)", self.spec.name, template, code, self.calls
        )
        self._cache[ck] = body
        if len(self._cache) > self.spec.cache_size:
            self._cache.popitem(last=False)
        return dig(body, value_path)

    def _check(self, template: str | None) -> str:
        if not template or "{key}" not in template:
            raise SourceRejected(
                f"source {self.spec.name}: lookup endpoint {template!r} has no {{key}} "
                "placeholder; fix the endpoint in the source spec"
            )
        return template

    def close(self) -> None:
        self._http.close()
