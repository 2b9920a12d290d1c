"""Subcommands ``case-records`` and ``file-drop`` of ``python -m simulators``.

``python -m simulators case-records --url URL --count N [--seed S] [--defect-rate R]``
(re)creates the acceptance system's ``T_YCSL_BJXX`` and ``T_SXML`` tables and
prints the generator report as JSON.

``python -m simulators file-drop --folder DIR --count N [--seed S] [--defect-rate R]
[--files F | --records-per-file M] [--delivery-date YYYY-MM-DD] [--start P]``
writes the health commission's GBK XML files and prints the report;
``--hostile`` writes the four hostile files instead and prints their paths.

``--with-ids`` (alias ``--with-keys``) adds ``defective_keys`` to the report.
Kept apart from ``__main__`` so several simulators can grow their commands at once.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any


def _case_records(args: argparse.Namespace) -> int:
    from simulators.case_records import generate

    report = generate(args.url, count=args.count, defect_rate=args.defect_rate, seed=args.seed)
    print(json.dumps(report.to_dict(include_keys=args.with_ids), ensure_ascii=False))
    return 0


def _file_drop(args: argparse.Namespace) -> int:
    from simulators.file_drop import write_batch, write_hostile

    when = date.fromisoformat(args.delivery_date) if args.delivery_date else None
    if args.hostile:
        paths = write_hostile(args.folder, **({"delivery_date": when} if when else {}))
        print(json.dumps({"hostile": {k: str(p) for k, p in paths.items()}}))
        return 0
    if args.count is None:
        raise SystemExit("file-drop: --count is required (or --hostile)")
    report = write_batch(
        args.folder,
        count=args.count,
        seed=args.seed,
        defect_rate=args.defect_rate,
        files=args.files,
        records_per_file=args.records_per_file,
        start=args.start,
        **({"delivery_date": when} if when else {}),
    )
    print(json.dumps(report.to_dict(include_keys=args.with_ids), ensure_ascii=False))
    return 0


def add_parsers(sub: Any) -> None:
    """Register both subcommands on the ``add_subparsers()`` object of the main parser."""
    cr = sub.add_parser("case-records", help="seed the acceptance system's case tables")
    cr.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:///var/ycsl.db")
    cr.add_argument("--count", type=int, required=True)
    cr.add_argument("--seed", type=int, default=0)
    cr.add_argument("--defect-rate", type=float, default=0.05)
    cr.add_argument("--with-ids", "--with-keys", dest="with_ids", action="store_true")
    cr.set_defaults(func=_case_records)

    fd = sub.add_parser("file-drop", help="write the health commission's GBK XML deliveries")
    fd.add_argument("--folder", required=True, help="drop folder (created if needed)")
    fd.add_argument("--count", type=int, help="records to write")
    fd.add_argument("--seed", type=int, default=0)
    fd.add_argument("--defect-rate", type=float, default=0.05)
    split = fd.add_mutually_exclusive_group()
    split.add_argument("--files", type=int, help="number of files")
    split.add_argument("--records-per-file", type=int, help="records per file (default 1000)")
    fd.add_argument("--delivery-date", help="YYYY-MM-DD in the file names")
    fd.add_argument("--start", type=int, default=1, help="position of the first record")
    fd.add_argument("--hostile", action="store_true", help="write the hostile files only")
    fd.add_argument("--with-ids", "--with-keys", dest="with_ids", action="store_true")
    fd.set_defaults(func=_file_drop)
