"""The ehub Airflow plugin.

Registers the hub with Airflow. Hooks that hand typed settings from Airflow
Connections to the Airflow-free packages live in :mod:`ehub_hooks`; the hub's
HTTP API and dashboard are mounted here by the operations work.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class EhubPlugin(AirflowPlugin):
    name = "ehub"
