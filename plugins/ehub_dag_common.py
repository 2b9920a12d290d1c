"""What the hub's DAG files share: defaults, assets, the stage-running task body.

Imported by the DAG files at parse time, so it imports nothing heavy: the
pipeline is imported inside the task when it runs.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset

NORMALIZED_LICENSES = Asset("ehub://store/licenses/normalized")
NORMALIZED_CASES = Asset("ehub://store/cases/normalized")
SEALED_LICENSES = Asset("ehub://store/licenses/sealed")

#: Every hub DAG: one run at a time, retries with backoff.
COMMON: dict[str, object] = {
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {
        "owner": "ehub",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
    },
}


def run_stage_task(name: str, source_id: str | None = None) -> dict[str, object]:
    """Run one pipeline stage; a Terminal error fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from ehub.errors import Terminal
    from ehub.tasks import run_stage
    from ehub_hooks import EhubHook

    try:
        return run_stage(name, EhubHook().get_settings(), source_id)
    except Exception as exc:
        if isinstance(exc, Terminal):
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise
