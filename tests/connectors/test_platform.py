"""Provincial platform client: receipts, error translation, no token in messages."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.errors import DestinationRejected
from connectors.platform import OutboundLicense, PlatformUnavailable, ProvincialClient

ITEM = OutboundLicense("k1", {"ZZBS": "x"}, "JVBERi0=", "ab" * 32)


def _client(handler) -> ProvincialClient:
    return ProvincialClient(
        "http://platform.test", "tok-123", transport=httpx.MockTransport(handler)
    )


def test_receipts_are_matched_by_idempotency_key() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        assert req.headers["authorization"] == "Bearer tok-123"
        body = json.loads(req.content)
        assert body["items"][0]["idempotency_key"] == "k1"
        return httpx.Response(
            200,
            json={
                "receipts": [
                    {
                        "idempotency_key": "k1",
                        "status": "accepted",
                        "receipt_id": "R1",
                        "duplicate": True,
                    }
                ]
            },
        )

    [r] = _client(handler).send_licenses([ITEM])
    assert r.accepted and r.receipt_id == "R1" and r.duplicate


def test_429_is_transient_with_retry_after() -> None:
    c = _client(lambda req: httpx.Response(429, headers={"Retry-After": "3"}))
    with pytest.raises(PlatformUnavailable) as err:
        c.send_licenses([ITEM])
    assert err.value.retry_after == 3.0


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"receipts": []}),
        httpx.Response(502),
    ],
)
def test_missing_or_malformed_receipts_count_as_not_delivered(response: httpx.Response) -> None:
    with pytest.raises(PlatformUnavailable):
        _client(lambda req: response).send_licenses([ITEM])


def test_401_is_terminal_and_does_not_leak_the_token() -> None:
    with pytest.raises(DestinationRejected) as err:
        _client(lambda req: httpx.Response(401, text="bad token")).send_licenses([ITEM])
    assert "tok-123" not in str(err.value)


def test_unreachable_platform_is_transient_and_named() -> None:
    c = ProvincialClient("http://127.0.0.1:1", "t", timeout=2)
    with pytest.raises(PlatformUnavailable, match=r"127\.0\.0\.1:1"):
        c.send_licenses([ITEM])


def test_a_batch_encoded_beforehand_is_posted_as_encoded() -> None:
    """The deliver stage encodes a batch in its own thread (encode_batch); the client
    posts those bytes as they are, and encodes a plain list itself, to the same JSON."""
    from connectors.platform import encode_batch

    items = [
        {"idempotency_key": f"k{n}", "license": {"ZZMC": "营业执照", "n": n}} for n in range(3)
    ]
    posted: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        assert req.headers["content-type"] == "application/json"
        posted.append(req.content)
        keys = [i["idempotency_key"] for i in json.loads(req.content)["items"]]
        return httpx.Response(
            200,
            json={
                "receipts": [
                    {"idempotency_key": k, "status": "accepted", "receipt_id": f"R-{k}"}
                    for k in keys
                ]
            },
        )

    batch = encode_batch(items)
    assert batch == items and json.loads(batch.body) == {"items": items}
    batch.body = batch.body.replace("营业执照".encode(), "营业执照 (pre-encoded)".encode())
    client = _client(handler)
    assert [r.receipt_id for r in client.send("/api/v1/x/batch", batch)] == ["R-k0", "R-k1", "R-k2"]
    client.send("/api/v1/x/batch", items)
    assert json.loads(posted[0])["items"][0]["license"]["ZZMC"] == "营业执照 (pre-encoded)"
    assert json.loads(posted[1]) == {"items": items}
