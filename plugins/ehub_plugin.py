"""The ehub Airflow plugin.

Registers the hub with Airflow. Hooks that hand typed settings from Airflow
Connections to the Airflow-free packages live in :mod:`ehub_hooks`. Here the
hub's operators' API and dashboard (:mod:`ehub.hub_api`, built without Airflow)
are mounted in the Airflow API server at ``/ehub``, and the dashboard
(数字驾驶舱, ``/ehub/dashboard``) gets an entry in the Airflow UI's navigation.

Airflow's own authentication does not cover plugin apps: the hub app checks its
operators' tokens itself (``EHUB_API_TOKENS``). Building the app opens nothing;
the hub store is opened at the first request.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/ehub"


def _hub_app() -> Any:
    from ehub.config import Settings
    from ehub.hub_api import create_app

    return create_app(Settings.from_env())


class EhubPlugin(AirflowPlugin):
    name = "ehub"
    fastapi_apps = [  # noqa: RUF012 - the AirflowPlugin interface
        {"app": _hub_app(), "url_prefix": URL_PREFIX, "name": "ehub 枢纽运维接口与数字驾驶舱"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "数字驾驶舱",
            # relative to the Airflow base URL; url_route shows it inside the UI (iframe)
            "href": URL_PREFIX.lstrip("/") + "/dashboard",
            "url_route": "ehub-dashboard",
            "destination": "nav",
            "category": "ehub",
        }
    ]
