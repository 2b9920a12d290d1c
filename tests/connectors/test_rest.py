"""REST source against an in-process fake API (httpx.MockTransport): pagination of
both kinds, resumption, rate limits, retries, credential errors, lookups."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from connectors.errors import SourceRejected, SourceUnavailable
from connectors.rest import RestLookup, RestLookupSpec, RestSource, RestSourceSpec, dig
from connectors.source import SourceBatch

TOKEN = "s3cret-token"


class FakeApi:
    """A department API: inclusive ``updated_since``, sorted by (updated_at, id)."""

    def __init__(self, n: int, *, header: str = "Authorization", value: str = f"Bearer {TOKEN}"):
        # three items share each timestamp: the key breaks ties
        self.items: list[dict[str, Any]] = [
            {"id": i, "updated_at": f"2026-01-01T00:{i // 3:02d}:00", "name": f"r{i}"}
            for i in range(1, n + 1)
        ]
        self.header, self.value = header, value
        self.requests: list[dict[str, str]] = []
        self.failures: list[httpx.Response] = []
        """Responses served (one each) before the API answers normally."""
        self.on_request: Callable[[FakeApi], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.requests.append(params)
        if self.failures:
            return self.failures.pop(0)
        if request.headers.get(self.header) != self.value:
            return httpx.Response(401, json={"error": "invalid token"})
        if self.on_request:
            self.on_request(self)
        since = params.get("updated_since")
        rows = sorted(
            (it for it in self.items if since is None or it["updated_at"] >= since),
            key=lambda it: (it["updated_at"], it["id"]),
        )
        size = int(params.get("page_size", "100"))
        if "page" in params:
            start = (int(params["page"]) - 1) * size
            return httpx.Response(200, json={"data": {"items": rows[start : start + size]}})
        start = int(params.get("cursor", "0"))
        nxt = str(start + size) if start + size < len(rows) else None
        return httpx.Response(
            200, json={"data": {"items": rows[start : start + size]}, "meta": {"next": nxt}}
        )


def _spec(**kw: Any) -> RestSourceSpec:
    base: dict[str, Any] = {
        "name": "housing.permits",
        "base_url": "https://dept.test",
        "path": "/api/v1/permits",
        "token": TOKEN,
        "conn_id": "housing_api",
        "page_size": 4,
        "batch_size": 5,
        "next_cursor_path": "meta.next",
    }
    base.update(kw)
    return RestSourceSpec(**base)


def _source(api: FakeApi, sleeps: list[float] | None = None, **kw: Any) -> RestSource:
    rec = sleeps if sleeps is not None else []
    return RestSource(_spec(**kw), transport=httpx.MockTransport(api), sleep=rec.append)


def _ids(batches: list[SourceBatch]) -> list[int]:
    return [r.payload["id"] for b in batches for r in b.records]


@pytest.mark.parametrize("pagination", ["page", "cursor"])
def test_reads_every_item_once_in_bounded_batches(pagination: str) -> None:
    api = FakeApi(23)
    batches = list(_source(api, pagination=pagination).read(None))
    assert [len(b.records) for b in batches] == [5, 5, 5, 5, 3]
    assert _ids(batches) == list(range(1, 24))
    first = batches[0].records[0]
    assert (first.key, first.version) == ("1", "2026-01-01T00:00:00")
    assert json.loads(batches[-1].cursor) == {"since": "2026-01-01T00:07:00", "key": 23}
    assert "updated_since" not in api.requests[0]


@pytest.mark.parametrize("pagination", ["page", "cursor"])
@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_resume_from_stored_cursor_gives_exactly_the_remaining_items(
    pagination: str, stop_after: int
) -> None:
    api = FakeApi(23)
    run = _source(api, pagination=pagination).read(None)
    first = [next(run) for _ in range(stop_after)]  # then the run "crashes"
    resumed = list(_source(api, pagination=pagination).read(first[-1].cursor))
    assert _ids(first) + _ids(resumed) == list(range(1, 24))
    # the resumed run asked the API from the stored version on (inclusive)
    cursor = json.loads(first[-1].cursor)
    assert any(r.get("updated_since") == cursor["since"] for r in api.requests)


def test_nothing_new_after_the_last_cursor() -> None:
    api = FakeApi(7)
    last = list(_source(api).read(None))[-1].cursor
    assert list(_source(api).read(last)) == []


def test_start_value_limits_the_first_run() -> None:
    api = FakeApi(9)
    got = _ids(list(_source(api, start="2026-01-01T00:02:00").read(None)))
    assert got == [6, 7, 8, 9]


def test_page_mode_loses_nothing_when_items_change_during_the_run() -> None:
    api = FakeApi(12)

    def bump(a: FakeApi) -> None:
        if len(a.requests) == 2:  # after the first page was read, item 2 changes
            a.items[1] = {**a.items[1], "updated_at": "2026-01-02T00:00:00"}

    api.on_request = bump
    got = _ids(list(_source(api, page_size=4, batch_size=50).read(None)))
    # every item read; the changed one again in its new version, last
    assert sorted(set(got)) == list(range(1, 13))
    assert got[-1] == 2


def test_rate_limit_honours_retry_after_capped() -> None:
    api = FakeApi(3)
    api.failures = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": "9999"}),
        httpx.Response(429),
    ]
    sleeps: list[float] = []
    got = _ids(list(_source(api, sleeps, max_retry_after_s=60).read(None)))
    assert got == [1, 2, 3]
    assert sleeps == [7.0, 60.0, 2.0]  # no Retry-After: backoff 0.5 * 2**2


def test_rate_limit_exhausted_is_unavailable() -> None:
    api = FakeApi(3)
    api.failures = [httpx.Response(429, headers={"Retry-After": "1"})] * 4
    sleeps: list[float] = []
    with pytest.raises(SourceUnavailable, match=r"housing\.permits.*HTTP 429 after 4 attempts"):
        list(_source(api, sleeps, max_retries=3).read(None))
    assert sleeps == [1.0, 1.0, 1.0]


def test_server_errors_are_retried_with_exponential_backoff() -> None:
    api = FakeApi(3)
    api.failures = [httpx.Response(503), httpx.Response(500), httpx.Response(502)]
    sleeps: list[float] = []
    assert _ids(list(_source(api, sleeps).read(None))) == [1, 2, 3]
    assert sleeps == [0.5, 1.0, 2.0]


def test_unreachable_host_is_unavailable_after_retries() -> None:
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    src = RestSource(_spec(max_retries=2), transport=httpx.MockTransport(down), sleep=sleeps.append)
    with pytest.raises(SourceUnavailable, match=r"housing\.permits.*ConnectError.*dept\.test"):
        list(src.read(None))
    assert len(calls) == 3
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token_is_terminal_and_names_the_connection(status: int) -> None:
    api = FakeApi(3)
    api.failures = [httpx.Response(status)]
    sleeps: list[float] = []
    with pytest.raises(SourceRejected) as exc:
        list(_source(api, sleeps).read(None))
    msg = str(exc.value)
    assert "token expired or rejected" in msg
    assert "housing_api" in msg and "housing.permits" in msg
    assert TOKEN not in msg
    assert sleeps == []  # not retried
    assert TOKEN not in repr(_spec())


def test_wrong_token_is_rejected() -> None:
    api = FakeApi(3)
    with pytest.raises(SourceRejected, match="renew the Airflow connection housing_api"):
        list(_source(api, token="old-token").read(None))


def test_custom_auth_header_without_scheme() -> None:
    api = FakeApi(2, header="X-Api-Key", value=TOKEN)
    got = _ids(list(_source(api, auth_header="X-Api-Key", auth_scheme="").read(None)))
    assert got == [1, 2]


def test_other_client_errors_and_bad_bodies_are_rejected() -> None:
    api = FakeApi(3)
    api.failures = [httpx.Response(400, json={"error": "bad param"})]
    with pytest.raises(SourceRejected, match="HTTP 400"):
        list(_source(api).read(None))
    api.failures = [httpx.Response(200, text="<html>maintenance</html>")]
    with pytest.raises(SourceRejected, match="not JSON"):
        list(_source(api).read(None))
    with pytest.raises(SourceRejected, match="no list at 'rows'"):
        list(_source(FakeApi(3), records_path="rows").read(None))
    with pytest.raises(SourceRejected, match="no scalar key at 'permit_no'"):
        list(_source(FakeApi(3), key_field="permit_no").read(None))
    with pytest.raises(SourceRejected, match="not a REST cursor"):
        list(_source(FakeApi(3)).read("2026-01-01|3"))


def test_items_out_of_order_fail_the_run() -> None:
    api = FakeApi(6)

    def unsorted(request: httpx.Request) -> httpx.Response:
        items = list(reversed(api.items))
        return httpx.Response(200, json={"data": {"items": items}})

    src = RestSource(_spec(page_size=10), transport=httpx.MockTransport(unsorted))
    with pytest.raises(SourceRejected, match="out of \\(version, key\\) order"):
        list(src.read(None))


def test_lookup_is_cached_per_key_and_404_is_none() -> None:
    seen: list[str] = []

    def orgs(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        key = unquote(request.url.raw_path.decode().rsplit("/", 1)[1])
        if key == "missing":
            return httpx.Response(404)
        return httpx.Response(200, json={"data": {"name": f"org {key}", "uscc": key}})

    spec = RestLookupSpec(
        name="housing.permits",
        base_url="https://dept.test",
        token=TOKEN,
        path_template="/api/v1/orgs/{key}",
        value_path="data.name",
        cache_size=2,
    )
    lk = RestLookup(spec, transport=httpx.MockTransport(orgs))
    assert lk.lookup("A1") == "org A1"
    assert lk.lookup("A1") == "org A1"
    assert lk.lookup("A1", "data.uscc") == "A1"
    assert lk.lookup("missing") is None
    assert lk.lookup("missing") is None
    assert lk.calls == 2
    assert lk.lookup("a/b") == "org a/b"
    assert seen[-1] == "/api/v1/orgs/a%2Fb"
    lk.lookup("A1")  # evicted by the LRU (size 2): fetched again
    assert lk.calls == 4
    lk.close()


def test_lookup_retries_and_translates_errors() -> None:
    answers = [httpx.Response(503), httpx.Response(200, json={"v": 1}), httpx.Response(401)]
    sleeps: list[float] = []
    spec = RestLookupSpec(
        name="d.s", base_url="https://x.test", path_template="/k/{key}", conn_id="c1"
    )
    lk = RestLookup(
        spec, transport=httpx.MockTransport(lambda r: answers.pop(0)), sleep=sleeps.append
    )
    assert lk.lookup("1", "v") == 1
    assert sleeps == [0.5]
    with pytest.raises(SourceRejected, match="renew the Airflow connection c1"):
        lk.lookup("2")
    with pytest.raises(SourceRejected, match="no \\{key\\} placeholder"):
        RestLookup(RestLookupSpec(name="d.s", base_url="https://x.test", path_template="/k"))


def test_source_lookup_client_shares_auth_and_caches_per_endpoint() -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401)
        kind, key = request.url.path.split("/")[-2:]
        return httpx.Response(200, json={"data": {"name": f"{kind} {key}"}})

    src = RestSource(_spec(), transport=httpx.MockTransport(api))
    lk = src.lookup_client()
    assert src.lookup_client() is lk
    assert lk.get("/api/v1/orgs/{key}", "A1", "data.name") == "orgs A1"
    assert lk.get("/api/v1/people/{key}", "A1", "data.name") == "people A1"
    assert lk.get("/api/v1/orgs/{key}", "A1", "data.name") == "orgs A1"
    assert seen == ["/api/v1/orgs/A1", "/api/v1/people/A1"]
    with pytest.raises(SourceRejected, match="no \\{key\\} placeholder"):
        lk.lookup("A1")  # no default template on a source's lookup client
    src.close()


def test_dig_paths() -> None:
    doc = {"a": {"b": [{"c": 1}]}}
    assert dig(doc, "a.b.0.c") == 1
    assert dig(doc, "a.x") is None
    assert dig(doc, "a.b.5") is None
    assert dig(doc, None) is doc
