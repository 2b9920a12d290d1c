"""``python -m ehub.airflow_run DAG_ID``: one DAG run through Airflow's ``dag.test()``.

Runs in the environment built by :func:`ehub.orchestration.airflow_env`; prints
one JSON line (state and each task's state and XCom counts) and exits 0 only
when the run succeeded.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ehub.airflow_run DAG_ID", file=sys.stderr)
        return 2
    dag_id = argv[0]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    if bag.import_errors:
        print(
            json.dumps(
                {
                    "dag_id": dag_id,
                    "state": "import_error",
                    "error": {k: v[-500:] for k, v in bag.import_errors.items()},
                }
            )
        )
        return 1
    dag = bag.get_dag(dag_id)
    if dag is None:
        print(json.dumps({"dag_id": dag_id, "state": "missing", "error": f"no DAG {dag_id}"}))
        return 1
    dr = dag.test()
    tasks = {}
    for ti in dr.get_task_instances():
        tasks[ti.task_id] = {"state": str(ti.state)}
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
        )
    )
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
