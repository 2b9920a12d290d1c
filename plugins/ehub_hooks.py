"""Airflow hooks: Airflow Connections → typed ehub settings.

Secrets (platform tokens, database passwords) belong in Airflow Connections or
the environment. ``EhubHook`` reads the connections ``ehub_provincial`` and
``ehub_national`` (host = platform URL, password = token) and ``ehub_store`` (the hub store URI) when
they exist and falls back to :meth:`ehub.config.Settings.from_env`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.hook import BaseHook

#: The national platform's connection (host = URL, password = token), when it exists.
NATIONAL_CONN = "ehub_national"


class EhubHook(BaseHook):
    conn_name_attr = "ehub_conn_id"
    default_conn_name = "ehub_provincial"
    conn_type = "http"
    hook_name = "ehub provincial platform"

    def __init__(self, ehub_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ehub_conn_id = ehub_conn_id

    def get_settings(self) -> Any:
        from ehub.config import Settings

        overrides: dict[str, Any] = {}
        for conn_id, platform in ((self.ehub_conn_id, "provincial"), (NATIONAL_CONN, "national")):
            try:
                conn = self.get_connection(conn_id)
            except Exception:
                conn = None
            if conn is not None and conn.host:
                overrides[f"{platform}_url"] = (
                    conn.host if "://" in conn.host else f"https://{conn.host}"
                )
                if conn.password:
                    overrides[f"{platform}_token"] = conn.password
        return Settings.from_env(**overrides)

    def test_connection(self) -> tuple[bool, str]:
        import httpx

        from connectors.tls import httpx_kwargs
        from ehub.errors import ConfigError

        settings = self.get_settings()
        try:
            resp = httpx.get(
                f"{settings.require('provincial_url')}/healthz",
                timeout=5,
                **httpx_kwargs(settings.platform_tls()),
            )
        except (httpx.HTTPError, ConfigError) as exc:
            return False, f"provincial platform unreachable: {exc}"
        return resp.status_code == 200, f"HTTP {resp.status_code}"
