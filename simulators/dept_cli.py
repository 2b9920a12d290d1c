"""Subcommands ``housing`` and ``transport-events`` of ``python -m simulators``.

``python -m simulators housing --db PATH [--count N --seed S --defect-rate R]
[--port 0] [--token T]`` makes sure the dataset at PATH holds those parameters
(reused when it does, generated otherwise; without ``--count`` PATH must
already be a dataset), then serves it under uvicorn and prints one JSON ready
line ``{"ready": true, "simulator": "housing", "url", "dataset", "expected"}``.
``--report FILE`` writes the full generator report (defective ids included);
``--generate-only`` prints the report and exits. SIGTERM/SIGINT stop the server
with exit status 0.

``python -m simulators transport-events --bootstrap HOST:PORT --topic T --count N
--seed S --defect-rate R`` publishes the events and prints the JSON report.

Kept apart from ``__main__`` so several simulators can grow their commands at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _housing(args: argparse.Namespace) -> int:
    from simulators import housing_store

    report_dict: dict[str, Any] | None
    generated = False
    if args.count is not None:
        report, generated = housing_store.ensure(args.db, args.count, args.seed, args.defect_rate)
        report_dict = report.to_dict(include_keys=True)
    else:
        report_dict = housing_store.read_meta(args.db, "report")
        if report_dict is None:
            raise SystemExit(f"{args.db} is not a housing dataset: pass --count to generate one")
    if args.report:
        Path(args.report).write_text(json.dumps(report_dict, ensure_ascii=False), "utf-8")
    if args.generate_only:
        summary = {k: v for k, v in report_dict.items() if k != "defective_keys"}
        print(json.dumps({**summary, "generated": generated}, ensure_ascii=False), flush=True)
        return 0

    from simulators.housing import create_app
    from simulators.serving import serve

    app = create_app(
        args.db,
        token=args.token,
        rate=args.rate_limit if args.rate_limit > 0 else None,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl=args.token_ttl,
    )
    ready: dict[str, Any] = {
        "ready": True,
        "simulator": "housing",
        "dataset": housing_store.read_meta(args.db, "params"),
        "expected": report_dict.get("expected"),
        "generated": generated,
    }

    return serve(app, args.host, args.port, args.log_level, ready)


def _transport_events(args: argparse.Namespace) -> int:
    from simulators.transport_events import publish

    report = publish(
        args.bootstrap,
        args.topic,
        args.count,
        args.seed,
        args.defect_rate,
        partitions=args.partitions,
    )
    print(json.dumps(report.to_dict(include_keys=args.with_keys), ensure_ascii=False))
    return 0


def add_parsers(sub: Any) -> None:
    """Register both subcommands on the ``add_subparsers()`` object of the main parser."""
    hz = sub.add_parser("housing", help="serve the housing department's permit REST API")
    hz.add_argument("--host", default="127.0.0.1")
    hz.add_argument("--port", type=int, default=8720, help="0 picks a free port")
    hz.add_argument("--db", required=True, help="SQLite dataset file (generated if needed)")
    hz.add_argument("--count", type=int, help="items; (re)generate unless PATH already holds them")
    hz.add_argument("--seed", type=int, default=0)
    hz.add_argument("--defect-rate", type=float, default=0.05)
    hz.add_argument("--token", help="static bearer token (default: $EHUB_SIM_HOUSING_TOKEN or dev)")
    hz.add_argument("--client-id", default="ehub", help="client id for POST /api/v1/token")
    hz.add_argument(
        "--client-secret", help="client secret (default: $EHUB_SIM_HOUSING_CLIENT_SECRET or dev)"
    )
    hz.add_argument("--token-ttl", type=float, default=3600.0, help="seconds an issued token lives")
    hz.add_argument("--rate-limit", type=float, default=50.0, help="requests/s per token; 0 = off")
    hz.add_argument("--report", help="write the full generator report (JSON) to this file")
    hz.add_argument("--generate-only", action="store_true", help="print the report, do not serve")
    hz.add_argument("--log-level", default="warning")
    hz.set_defaults(func=_housing)

    te = sub.add_parser("transport-events", help="publish the transport department's events")
    te.add_argument("--bootstrap", required=True, help="Kafka bootstrap, e.g. 127.0.0.1:9092")
    te.add_argument("--topic", required=True)
    te.add_argument("--count", type=int, required=True, help="number of events")
    te.add_argument("--seed", type=int, default=0)
    te.add_argument("--defect-rate", type=float, default=0.05)
    te.add_argument("--partitions", type=int, default=3, help="when the topic must be created")
    te.add_argument("--with-keys", action="store_true", help="include the defective event ids")
    te.set_defaults(func=_transport_events)
