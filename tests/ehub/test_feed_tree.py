"""Batch-signed return-feed envelopes (``ehub.feed_tree``): every envelope of a batch
verifies on its own with the hub's certificate, validates against the envelope
schema, and any change — to the envelope, its place in the tree, its path, or the
signature's statement — makes it fail, without an exception."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import jsonschema
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ehub.feed_tree import root_of, statement, tree_root
from ehub.feeds import FeedSigner, envelope, envelope_body, sign_envelopes, verify_envelope
from schemas import path as schema_path


def _signer(name: str = "hub") -> FeedSigner:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .sign(key, hashes.SHA256()))  # fmt: skip
    return FeedSigner(key, cert)


SIGNER = _signer()
STRANGER = _signer("not the hub")
VALIDATOR = jsonschema.Draft202012Validator(
    json.loads(schema_path("return_envelope.schema.json").read_text("utf-8"))
)


def _body(n: int) -> bytes:
    return envelope_body(
        kind="license", identifier=f"1.2.156.3005.2.TEST.{n:06d}", version=1 + n % 3,
        status="valid", division="370602", office="370602-county",
        payload={"ZZBS": f"1.2.156.3005.2.TEST.{n:06d}", "CZZT": "张*", "n": n},
        message_id=hashlib.sha256(str(n).encode()).hexdigest()[:48],
    )  # fmt: skip


def _batch(size: int, signer: FeedSigner = SIGNER) -> list[dict[str, Any]]:
    return [json.loads(e) for e in sign_envelopes([_body(n) for n in range(size)], signer)]


def _ok(env: dict[str, Any], certs: list[x509.Certificate] | None = None) -> bool:
    raw = json.dumps(env, ensure_ascii=False).encode()
    return verify_envelope(raw, certs or [SIGNER.cert])


@pytest.mark.parametrize("size", [*range(1, 18), 31, 32, 33, 100, 2000])
def test_every_envelope_of_a_batch_verifies_on_its_own(size: int) -> None:
    batch = _batch(size)
    assert len(batch) == size
    for i, env in enumerate(batch):
        assert env["signature"]["tree"]["index"] == i
        assert env["signature"]["tree"]["size"] == size
        assert _ok(env), i
        assert not _ok(env, [STRANGER.cert])  # another key's certificate
        assert not list(VALIDATOR.iter_errors(env))
    # One signature for the whole batch; the path is as long as the tree is high.
    assert len({env["signature"]["value"] for env in batch}) == 1
    longest = max(len(base64.b64decode(env["signature"]["tree"]["path"])) for env in batch)
    assert longest == 32 * (size - 1).bit_length()


def test_the_root_is_the_signed_statement() -> None:
    """What the signature covers is the statement over the root of the bodies' tree,
    which an office recomputes from any one envelope."""
    bodies = [_body(n) for n in range(5)]
    env = json.loads(sign_envelopes(bodies, SIGNER)[3])
    sig = env.pop("signature")
    canonical = json.dumps(env, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical.encode() == bodies[3]
    assert root_of(bodies[3], sig["tree"]) == tree_root(bodies)
    key = SIGNER.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(base64.b64decode(sig["value"]), statement(5, tree_root(bodies)),
               ec.ECDSA(hashes.SHA256()))  # fmt: skip


def test_a_single_envelope_keeps_its_own_signature() -> None:
    """``envelope`` (one message, no tree) still signs the canonical JSON itself, and a
    version 2 envelope of that form verifies."""
    fields = json.loads(_body(7))
    env = json.loads(envelope(signer=SIGNER, **{k: fields[k] for k in (
        "kind", "identifier", "version", "division", "office", "payload", "message_id")},
        status="valid"))  # fmt: skip
    assert "tree" not in env["signature"]
    assert _ok(env)
    env["schema"] = "ehub.return/2"  # an older message: the same signature form
    assert not _ok(env)  # the schema member is signed too
    assert not list(VALIDATOR.iter_errors(env))


def _tampered(batch: list[dict[str, Any]], how: str) -> dict[str, Any]:
    env = json.loads(json.dumps(batch[2]))
    tree = env["signature"]["tree"]
    path = base64.b64decode(tree["path"])
    if how == "payload":
        env["payload"]["CZZT"] = "张三"
    elif how == "office":
        env["office"] = "370602001-town"
    elif how == "index":
        tree["index"] = 3
    elif how == "size":
        tree["size"] = 7
    elif how == "path byte":
        tree["path"] = base64.b64encode(bytes([path[0] ^ 1]) + path[1:]).decode()
    elif how == "path short":
        tree["path"] = base64.b64encode(path[:-32]).decode()
    elif how == "path long":
        tree["path"] = base64.b64encode(path + path[:32]).decode()
    elif how == "path ragged":
        tree["path"] = base64.b64encode(path[:-1]).decode()
    elif how == "other's tree":
        env["signature"]["tree"] = batch[5]["signature"]["tree"]
    elif how == "no tree":
        del env["signature"]["tree"]
    elif how == "other batch's signature":
        env["signature"]["value"] = _batch(6)[2]["signature"]["value"]
    elif how == "index out of range":
        tree["index"] = tree["size"]
    elif how == "index as text":
        tree["index"] = "2"
    elif how == "size zero":
        tree["size"], tree["index"] = 0, 0
    elif how == "size huge":
        tree["size"] = 1 << 40
    elif how == "path not base64":
        tree["path"] = "not base64!"
    elif how == "extra member":
        tree["root"] = "00"
    elif how == "tree not an object":
        env["signature"]["tree"] = [2, 6, tree["path"]]
    else:  # pragma: no cover
        raise AssertionError(how)
    return env


HOW = ["payload", "office", "index", "size", "path byte", "path short", "path long",
       "path ragged", "other's tree", "no tree", "other batch's signature",
       "index out of range", "index as text", "size zero", "size huge", "path not base64",
       "extra member", "tree not an object"]  # fmt: skip


@pytest.mark.parametrize("how", HOW)
def test_a_changed_envelope_fails_without_an_exception(how: str) -> None:
    batch = _batch(6)
    assert _ok(batch[2])
    assert not _ok(_tampered(batch, how))


def test_a_single_signature_is_not_a_tree_signature() -> None:
    """A message's own signature (over its JSON) with a tree member added fails, and a
    tree's signature without the tree fails: the two statements never coincide."""
    fields = json.loads(_body(1))
    single = json.loads(envelope(signer=SIGNER, **{k: fields[k] for k in (
        "kind", "identifier", "version", "division", "office", "payload", "message_id")},
        status="valid"))  # fmt: skip
    single["signature"]["tree"] = {"index": 0, "size": 1, "path": ""}
    assert not _ok(single)
    lone = _batch(1)[0]
    assert lone["signature"]["tree"] == {"index": 0, "size": 1, "path": ""}
    assert _ok(lone)
    del lone["signature"]["tree"]
    assert not _ok(lone)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_any_flipped_bit_of_the_path_fails(size: int, data: st.DataObject) -> None:
    bodies = [_body(n) for n in range(size)]
    root = tree_root(bodies)
    signed = [json.loads(e) for e in sign_envelopes(bodies, SIGNER)]
    i = data.draw(st.integers(0, size - 1))
    tree = signed[i]["signature"]["tree"]
    assert root_of(bodies[i], tree) == root
    path = base64.b64decode(tree["path"])
    if path:
        bit = data.draw(st.integers(0, len(path) * 8 - 1))
        flipped = bytearray(path)
        flipped[bit // 8] ^= 1 << (bit % 8)
        bad = dict(tree, path=base64.b64encode(bytes(flipped)).decode())
        assert root_of(bodies[i], bad) != root
    j = data.draw(st.integers(0, size - 1))
    if j != i:  # another leaf's body on this leaf's path
        assert root_of(bodies[j], tree) != root


def test_a_path_leads_to_the_root_from_its_own_index_only() -> None:
    """Claiming another place in the batch (every other index, every size up to 40)
    never leads to the signed root."""
    for size in range(1, 41):
        bodies = [_body(n) for n in range(size)]
        root = tree_root(bodies)
        for i, env in enumerate(sign_envelopes(bodies, SIGNER)):
            tree = json.loads(env)["signature"]["tree"]
            assert root_of(bodies[i], tree) == root
            for other in range(size):
                if other != i:
                    assert root_of(bodies[i], dict(tree, index=other)) != root, (size, i, other)


def _as_documented(raw: bytes, cert: x509.Certificate) -> bool:
    """The README's steps ("Checking a message elsewhere"), written without ehub."""
    env = json.loads(raw)
    sig = env.pop("signature")
    text = json.dumps(env, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    tree = sig.get("tree")
    if tree is not None:
        index, size, path = tree["index"], tree["size"], base64.b64decode(tree["path"])
        node, used = hashlib.sha256(b"\x00" + text).digest(), 0
        while size > 1:
            if index % 2 == 1:
                node = hashlib.sha256(b"\x01" + path[used : used + 32] + node).digest()
                used += 32
            elif index + 1 < size:
                node = hashlib.sha256(b"\x01" + node + path[used : used + 32]).digest()
                used += 32
            index, size = index // 2, (size + 1) // 2
        if used != len(path):
            return False
        text = b"ehub.return-feed.tree.v1\n" + tree["size"].to_bytes(4, "big") + node
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        key.verify(base64.b64decode(sig["value"]), text, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100])
def test_the_readme_steps_verify_the_published_envelopes(size: int) -> None:
    """An office following the README, without ehub, accepts every envelope of a batch
    and refuses a changed one."""
    signed = sign_envelopes([_body(n) for n in range(size)], SIGNER)
    assert all(_as_documented(env, SIGNER.cert) for env in signed)
    changed = json.loads(signed[-1])
    changed["version"] += 1
    assert not _as_documented(json.dumps(changed, ensure_ascii=False).encode(), SIGNER.cert)
    assert not _as_documented(signed[0], STRANGER.cert)
