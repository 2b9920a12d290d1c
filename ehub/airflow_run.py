"""``python -m ehub.airflow_run DAG_ID [DAG_ID…]``: DAG runs through Airflow's ``dag.test()``.

Runs in the environment built by :func:`ehub.orchestration.airflow_env`, one
DAG after the other in one process (Airflow's start-up is paid once). Prints one
JSON line per DAG (its state and each task's state) and exits 0 only when every
run succeeded; it stops at the first DAG that does not.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m ehub.airflow_run DAG_ID [DAG_ID…]", file=sys.stderr)
        return 2
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    if bag.import_errors:
        print(
            json.dumps(
                {
                    "dag_id": argv[0],
                    "state": "import_error",
                    "error": {k: v[-500:] for k, v in bag.import_errors.items()},
                }
            )
        )
        return 1
    for dag_id in argv:
        dag = bag.get_dag(dag_id)
        if dag is None:
            print(json.dumps({"dag_id": dag_id, "state": "missing", "error": f"no DAG {dag_id}"}))
            return 1
        dr = dag.test()
        tasks = {ti.task_id: {"state": str(ti.state)} for ti in dr.get_task_instances()}
        state = str(dr.state)
        failed = [t for t, v in tasks.items() if v["state"] != "success"]
        print(
            json.dumps(
                {
                    "dag_id": dag_id,
                    "state": state,
                    "tasks": tasks,
                    "error": f"tasks not successful: {failed}" if failed else None,
                }
            ),
            flush=True,
        )
        if state != "success":
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
