"""Command line of the simulators.

``python -m simulators provincial --host 127.0.0.1 --port 8710 --state DIR`` runs
the provincial platform simulator under uvicorn and prints one JSON ready line
(``{"ready": true, "url": ...}``) once it accepts connections; SIGTERM/SIGINT
stop it gracefully (exit status 0). ``--port 0`` picks a free port (read it from
the ready line). ``--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]`` serve
HTTPS instead (mutual TLS with a client CA): see :mod:`simulators.serving`.

``python -m simulators national --state DIR`` runs the national platform
simulator the same way (default port 8720).

``python -m simulators market-regulation --url URL --count N --defect-rate R --seed S``
(re)creates and fills the market-regulation table and prints the JSON report.

``housing`` (REST permit API) and ``transport-events`` (Kafka license events):
see :mod:`simulators.dept_cli`. ``case-records`` (acceptance system's case
tables) and ``file-drop`` (health commission's GBK XML files): see
:mod:`simulators.seed_cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from simulators.serving import add_tls_arguments


def _provincial(args: argparse.Namespace) -> int:
    from simulators.platform_core import warm_up
    from simulators.provincial import create_app
    from simulators.serving import serve, tls_from_args

    tls = tls_from_args(args)
    app = create_app(
        Path(args.state),
        schema_path=Path(args.schema) if args.schema else None,
        token=args.token,
        max_items=args.max_items,
        rate_limit=args.rate_limit if args.rate_limit > 0 else None,
        timeout_delay=args.timeout_delay,
        signature_check=args.signature_check,
        keep_documents=args.keep_documents,
    )
    warm_up(app.state.kinds.values())
    return serve(
        app, args.host, args.port, args.log_level, {"ready": True, "simulator": "provincial"}, tls
    )


def _national(args: argparse.Namespace) -> int:
    from simulators.national import create_app
    from simulators.platform_core import warm_up
    from simulators.serving import serve, tls_from_args

    tls = tls_from_args(args)
    app = create_app(
        Path(args.state),
        token=args.token,
        max_items=args.max_items,
        rate_limit=args.rate_limit if args.rate_limit > 0 else None,
        timeout_delay=args.timeout_delay,
    )
    warm_up(app.state.kinds.values())
    ready = {"ready": True, "simulator": "national"}
    return serve(app, args.host, args.port, args.log_level, ready, tls)


def _market_regulation(args: argparse.Namespace) -> int:
    from simulators.market_regulation import generate

    report = generate(args.url, count=args.count, defect_rate=args.defect_rate, seed=args.seed)
    print(json.dumps(report.to_dict(include_ids=args.with_ids), ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    prov = sub.add_parser("provincial", help="run the provincial e-license platform simulator")
    prov.add_argument("--host", default="127.0.0.1")
    prov.add_argument("--port", type=int, default=8710)
    prov.add_argument("--state", required=True, help="directory for the simulator's SQLite state")
    prov.add_argument("--schema", help="license JSON Schema (default: schemas/license.schema.json)")
    prov.add_argument("--token", help="bearer token (default: $EHUB_SIM_PROVINCIAL_TOKEN or dev)")
    prov.add_argument("--max-items", type=int, default=100)
    prov.add_argument("--rate-limit", type=float, default=200.0, help="requests/s; 0 = off")
    prov.add_argument("--timeout-delay", type=float, default=30.0, help="seconds for 'timeout'")
    prov.add_argument("--signature-check", choices=("structural", "integrity"), default="integrity")
    prov.add_argument("--keep-documents", action="store_true", help="write PDFs to STATE/documents")
    prov.add_argument("--log-level", default="warning")
    add_tls_arguments(prov)
    prov.set_defaults(func=_provincial)

    nat = sub.add_parser("national", help="run the national e-license platform simulator")
    nat.add_argument("--host", default="127.0.0.1")
    nat.add_argument("--port", type=int, default=8720)
    nat.add_argument("--state", required=True, help="directory for the simulator's SQLite state")
    nat.add_argument("--token", help="bearer token (default: $EHUB_SIM_NATIONAL_TOKEN or dev)")
    nat.add_argument("--max-items", type=int, default=500)
    nat.add_argument("--rate-limit", type=float, default=200.0, help="requests/s; 0 = off")
    nat.add_argument("--timeout-delay", type=float, default=30.0, help="seconds for 'timeout'")
    nat.add_argument("--log-level", default="warning")
    add_tls_arguments(nat)
    nat.set_defaults(func=_national)

    mr = sub.add_parser("market-regulation", help="seed the market-regulation license table")
    mr.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:///var/scjg.db")
    mr.add_argument("--count", type=int, required=True)
    mr.add_argument("--defect-rate", type=float, default=0.05)
    mr.add_argument("--seed", type=int, default=0)
    mr.add_argument(
        "--with-ids",
        "--with-keys",
        dest="with_ids",
        action="store_true",
        help="include the defective row IDs",
    )
    mr.set_defaults(func=_market_regulation)

    from simulators.dept_cli import add_parsers as add_housing_and_transport

    add_housing_and_transport(sub)  # housing, transport-events

    from simulators.seed_cli import add_parsers as add_cases_and_files

    add_cases_and_files(sub)  # case-records, file-drop
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
