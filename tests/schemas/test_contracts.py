"""The platform contracts (schemas/*.openapi.yaml) against themselves, the JSON Schemas and
the simulators that implement them.

openapi-spec-validator is not a dependency, so OpenAPI 3.1 validity is checked
structurally: version, required members, operations and responses, unique
operation ids, declared path parameters, defined security schemes, and every
``$ref`` (local or into a JSON Schema file) resolving.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from referencing import Registry, Resource

from simulators import national, provincial
from simulators.platform_checks import CST

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CONTRACTS = {"provincial": "provincial.openapi.yaml", "national": "national.openapi.yaml"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
NEW_SCHEMAS = [
    "platform.schema.json",
    "license_item.schema.json",
    "case_item.schema.json",
    "catalog_item.schema.json",
    "seal_item.schema.json",
    "seal_registration.schema.json",
]
TOKEN = "contract-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SCHEMAS / CONTRACTS[name]).read_text("utf-8"))
    return doc


def make_app(name: str, state: Path) -> FastAPI:
    if name == "provincial":
        return provincial.create_app(state, token=TOKEN, signature_check="structural")
    return national.create_app(state, token=TOKEN)


def _retrieve(uri: str) -> Resource:
    name = uri.rsplit("/", 1)[-1].split("#", 1)[0]
    return Resource.from_contents(json.loads((SCHEMAS / name).read_text("utf-8")))


REGISTRY: Registry = Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    cls = jsonschema.Draft202012Validator
    return cls(schema, registry=REGISTRY, format_checker=cls.FORMAT_CHECKER)


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def resolve_local(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in filter(None, ref.lstrip("#").split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in all_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in all_refs(v)]
    return []


@pytest.mark.parametrize("name", CONTRACTS)
def test_contract_is_structurally_valid_openapi_3_1(name: str) -> None:
    doc = load(name)
    assert re.fullmatch(r"3\.1\.\d+", str(doc["openapi"]))
    assert doc["info"]["title"] and doc["info"]["version"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert "mutual TLS" in schemes["bearer"]["description"]
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for path, method, op in operations(doc):
        assert path.startswith("/")
        assert op["responses"], f"{method} {path}: no responses"
        assert all(re.fullmatch(r"[1-5]\d\d|[1-5]XX|default", str(c)) for c in op["responses"])
        for requirement in op.get("security", doc.get("security", [])):
            assert set(requirement) <= set(schemes)
        params = [resolve_local(doc, p["$ref"]) if "$ref" in p else p
                  for p in op.get("parameters", [])]  # fmt: skip
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), f"{method} {path}"
        if path.startswith("/api/"):
            assert "401" in op["responses"] and op.get("security") == [{"bearer": []}]
        if path.endswith("/batch"):
            assert {"200", "401", "413", "422", "429", "502", "503"} <= set(op["responses"])
            headers = resolve_local(doc, op["responses"]["429"]["$ref"])["headers"]
            assert "Retry-After" in headers
    for ref in all_refs(doc):
        target, _, pointer = ref.partition("#")
        base = json.loads((SCHEMAS / target).read_text("utf-8")) if target else doc
        resolve_local(base, pointer)


@pytest.mark.parametrize("name", NEW_SCHEMAS)
def test_json_schemas_are_valid_and_their_refs_resolve(name: str) -> None:
    schema = json.loads((SCHEMAS / name).read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    for ref in all_refs(schema):
        target, _, pointer = ref.partition("#")
        doc = json.loads((SCHEMAS / target).read_text("utf-8")) if target else schema
        if pointer:
            resolve_local(doc, pointer)


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_contract_path_is_served_and_every_api_path_is_in_the_contract(
    name: str, tmp_path: Path
) -> None:
    served = {
        (route.path, method.lower())
        for route in make_app(name, tmp_path).routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    contract = {(path, method) for path, method, _ in operations(load(name))}
    assert contract - served == set(), "in the contract, not served"
    api = {(p, m) for p, m in served if p.startswith("/api/")}
    assert api - contract == set(), "served under /api/, not in the contract"
    assert {(p, m) for p, m in served if p.startswith("/admin/") or p == "/healthz"} <= contract


def examples(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    out = []
    for path, _method, op in operations(doc):
        media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        for example in media.get("examples", {}).values():
            out.append((path, media["schema"], example["value"]))
    return out


@pytest.mark.parametrize("name", CONTRACTS)
def test_examples_match_their_schemas_and_the_simulator_accepts_them(
    name: str, tmp_path: Path
) -> None:
    doc = load(name)
    found = examples(doc)
    batch_paths = {p for p, _, _ in operations(doc) if p.endswith("/batch")}
    assert batch_paths <= {p for p, _, _ in found}, "every batch endpoint has an example"
    client = TestClient(make_app(name, tmp_path))
    for path, schema, value in found:
        problems = [e.message for e in validator(schema).iter_errors(value)]
        assert problems == [], f"{path}: {problems}"
        if path.endswith("/batch"):
            response = client.post(path, json=value, headers=AUTH)
            assert response.status_code == 200, response.text
            assert [r["status"] for r in response.json()["receipts"]] == ["accepted"], path
            receipts = validator({"$ref": "platform.schema.json#/$defs/BatchResponse"})
            receipts.validate(response.json())
    check_read_endpoints(doc, client, [v for _, _, v in found])
    day = datetime.now(CST).date().isoformat()
    report = validator({"$ref": "platform.schema.json#/$defs/Reconciliation"})
    kinds = doc["components"]["parameters"]["Kind"]["schema"]["enum"]
    for kind in kinds:
        body = client.get(f"/api/v1/reconciliation/{day}?kind={kind}", headers=AUTH).json()
        report.validate(body)
        assert body["count"] == 1, kind
    validator({"$ref": "platform.schema.json#/$defs/Stats"}).validate(
        client.get("/admin/stats").json()
    )


def check_read_endpoints(doc: dict[str, Any], client: TestClient, bodies: list[Any]) -> None:
    """Every ``GET /api/v1/<kind>/{id}`` serves the example's record in its contract shape."""
    items = [i for body in bodies if isinstance(body, dict) for i in body.get("items", [])]
    ids = {
        "identifier": next(i["license"]["ZZBS"] for i in items if "license" in i),
        "case_number": next(i["case"]["BJBH"] for i in items if "case" in i),
    }
    seals = [i["registration"]["seal"]["esID"] for i in items if "registration" in i]
    if seals:
        ids["es_id"] = seals[0]
    for path, method, op in operations(doc):
        param = re.fullmatch(r"/api/v1/(licenses|cases|catalog|seals)/{(\w+)}", path)
        if method != "get" or param is None:
            continue
        response = client.get(path.replace(f"{{{param[2]}}}", ids[param[2]]), headers=AUTH)
        assert response.status_code == 200, (path, response.text)
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        validator(schema).validate(response.json())
        assert len(response.json()["versions"]) == 1


def test_the_hubs_seal_registration_matches_the_schema(tmp_path: Path) -> None:
    """The document ehub.seal_registration.export_registration writes fits the schema."""
    from ehub.seals import Seal, export_registration
    from tests.simulators.platform_payloads import DEPARTMENT, PNG, certificate

    pem = certificate("hub seal")[0]
    image = tmp_path / "seal.png"
    image.write_bytes(PNG)
    now = datetime.now(CST)
    seal = Seal(
        id=1, code="370602-MB0056780-01", department="芝罘区市场监督管理局",
        department_uscc=DEPARTMENT, division="370602", name="电子证照专用章",
        seal_type="电子证照专用章", license_types=("11100000000013338W001",), cross_level=False,
        image_path=str(image), image_sha256=__import__("hashlib").sha256(PNG).hexdigest(),
        cert_pem=pem, chain_pem=None, key_ref="p12:x", status="active", status_reason=None,
        suspended_at=None, revoked_at=None, registration_no=None, registered_at=None,
        valid_from=datetime(2024, 1, 2, tzinfo=CST), valid_until=datetime(2025, 1, 1, tzinfo=CST),
        created_at=now,
    )  # fmt: skip
    doc = export_registration(seal)
    problems = [e.message for e in validator({"$ref": "seal_registration.schema.json"})
                .iter_errors(doc)]  # fmt: skip
    assert problems == []
    client = TestClient(national.create_app(tmp_path / "national", token=TOKEN))
    body = {"items": [{"idempotency_key": "seal-1", "registration": doc}]}
    (receipt,) = client.post("/api/v1/seals/batch", json=body, headers=AUTH).json()["receipts"]
    assert receipt["status"] == "accepted", receipt
