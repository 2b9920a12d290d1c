"""docker-compose.yml: valid for Debian's docker-compose, every service the deployment
needs with a health check, workers scalable, and no secret written in the file."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import need_binary

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"

#: Every variable the file requires (``${VAR:?…}``), with a dummy value.
REQUIRED = {
    "POSTGRES_PASSWORD": "dummy-pg",
    "EHUB_DB_PASSWORD": "dummy-hub",
    "REDIS_PASSWORD": "dummy-redis",
    "AIRFLOW_FERNET_KEY": "dummy-fernet",
    "AIRFLOW_JWT_SECRET": "dummy-jwt",
    "AIRFLOW_API_SECRET_KEY": "dummy-api",
    "EHUB_PROVINCIAL_TOKEN": "dummy-prov",
    "EHUB_NATIONAL_TOKEN": "dummy-nat",
    "EHUB_SEAL_PASSPHRASE": "dummy-seal",
    "EHUB_TLS_DIR": "/srv/ehub/tls",
    "EHUB_KAFKA_SECRETS_DIR": "/srv/ehub/kafka-secrets",
    "EHUB_KAFKA_PUBLIC_HOST": "kafka.example.invalid",
}
SECRETS = (
    "POSTGRES_PASSWORD", "EHUB_DB_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "EHUB_PROVINCIAL_TOKEN",
    "EHUB_NATIONAL_TOKEN", "EHUB_SEAL_PASSPHRASE",
)  # fmt: skip


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = need_binary("docker-compose", "docker-compose")
    # Only the variables given: none of the caller's environment leaks into the check.
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [binary, "-f", str(COMPOSE), *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """The configuration as docker-compose resolves it, every profile included."""
    proc = _compose("--profile", "simulators", "config", env=REQUIRED)
    assert proc.returncode == 0, proc.stderr
    return dict(yaml.safe_load(proc.stdout))


def test_config_is_valid_with_the_required_variables() -> None:
    proc = _compose("config", "-q", env=REQUIRED)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_every_required_variable_is_known_here() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required == set(REQUIRED)


@pytest.mark.parametrize("missing", SECRETS)
def test_a_missing_secret_stops_the_config_naming_it(missing: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != missing}
    proc = _compose("config", "-q", env=env)
    assert proc.returncode != 0
    assert f"set {missing}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_services_of_the_deployment(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    for name in ("postgres", "kafka", "redis", "api-server", "scheduler", "dag-processor",
                 "triggerer", "worker", "verify-server", "provincial-sim", "national-sim"):  # fmt: skip
        assert name in services, name
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    # Simulators only on request.
    for name in ("provincial-sim", "national-sim", "pki-dev"):
        assert services[name]["profiles"] == ["simulators"]
    # State lives in named volumes.
    assert {"postgres-data", "kafka-data", "redis-data", "ehub-data"} <= set(rendered["volumes"])


def test_workers_scale(rendered: dict[str, Any]) -> None:
    worker = rendered["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"].startswith("celery worker")
    env = worker["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")


def test_kafka_kraft_with_a_mutual_tls_listener(rendered: dict[str, Any]) -> None:
    kafka = rendered["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols["SSL"] == "SSL" and protocols["INTERNAL"] == "PLAINTEXT"
    assert env["KAFKA_SSL_CLIENT_AUTH"] == "required"
    assert any(v.endswith(":/etc/kafka/secrets:ro") for v in kafka["volumes"])


def test_simulators_serve_mutual_tls(rendered: dict[str, Any]) -> None:
    for name in ("provincial-sim", "national-sim"):
        command = rendered["services"][name]["command"]
        for flag in ("--tls-cert", "--tls-key", "--tls-client-ca"):
            assert flag in command, (name, flag)
    env = rendered["services"]["worker"]["environment"]
    assert env["EHUB_PROVINCIAL_URL"].startswith("https://")
    assert env["EHUB_NATIONAL_URL"].startswith("https://")


def test_no_secret_is_written_in_the_file() -> None:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    secretish = re.compile(
        r"(PASSWORD|TOKEN|SECRET|SECRET_KEY|FERNET_KEY|PASSPHRASE|PIN|CLI_AUTH)$"
    )

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and secretish.search(key) and value not in (None, ""):
                    assert isinstance(value, str) and value.startswith("${"), (
                        f"{path}.{key} holds a literal value"
                    )
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
        elif isinstance(node, str):
            # Credentials inside URLs come from variables too.
            for _user, password in re.findall(r"://([^:/@\s]*):([^@\s]+)@", node):
                assert password.startswith("${"), f"{path}: a literal password in {node!r}"

    walk(doc, "compose")


def test_secrets_have_no_default() -> None:
    """A secret variable never has a default (``${VAR:-…}``) to fall back on."""
    text = COMPOSE.read_text(encoding="utf-8")
    for name in SECRETS:
        assert not re.search(rf"\$\{{{name}:?-", text), f"{name} has a default"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if m := re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip()):
            pins[m[1].lower()] = m[2]
    return pins


def test_the_image_installs_the_locked_pins_plus_the_celery_provider() -> None:
    """The image's lock is requirements.lock (the same pins, every package) plus the
    deployment-only Celery provider; the Dockerfile installs nothing unlocked."""
    dev, deploy = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-deploy.lock")
    assert dev and all(deploy.get(name) == version for name, version in dev.items()), {
        name: (version, deploy.get(name)) for name, version in dev.items()
        if deploy.get(name) != version
    }  # fmt: skip
    assert "apache-airflow-providers-celery" in deploy and "celery" in deploy
    docker = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"(?:uv pip|pip) install[^\n]*", docker)
    assert any("-r requirements-deploy.lock" in i for i in installs), installs
    assert all("-r requirements-deploy.lock" in i or '"uv==' in i or "-e ." in i
               for i in installs), installs  # fmt: skip
