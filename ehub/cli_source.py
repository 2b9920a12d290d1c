"""``ehub source …``: what a data engineer uses to onboard a department system.

- ``validate FILE…``  — the spec's errors with line and column, or a summary;
- ``preview FILE``    — a live sample mapped and validated, as a table; writes nothing
  (no watermark, no Kafka offset commit, no file moved);
- ``run FILE``        — one ingest run (extract + normalize) outside the scheduler;
- ``list``            — the specs of the sources folder with their DAG ids and watermarks.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ehub.config import Settings
from ehub.errors import SpecError

console = Console(width=None if Console().is_terminal else 160)

#: Fields that are personal data when the holder / applicant is a person.
_PERSONAL = {"CZZT", "CZZTDM", "SQRMC", "SQRZJHM"}


@click.group()
def source() -> None:
    """Onboard department sources: validate, preview, run, list."""


@source.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Check source spec files; errors name file:line:column."""
    from ehub.sources.loader import load_spec

    failed = 0
    for f in files:
        try:
            spec = load_spec(f)
        except SpecError as exc:
            failed += 1
            for ln, col, path, msg in exc.problems:
                console.print(f"[red]{f}:{ln}:{col}[/]: [bold]{path or '(spec)'}[/]: {msg}")
            continue
        console.print(
            f"[green]ok[/] {f}: {spec.id} ({spec.kind}, {spec.record_kind}) → DAG "
            f"{spec.dag_id}, {len(spec.mapping)} fields mapped, unknown fields: "
            f"{spec.contract.unknown_fields}"
        )
    if failed:
        raise SystemExit(1)


@source.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--limit", default=20, show_default=True, help="Records to show.")
@click.option("--reveal", is_flag=True, help="Show personal data unmasked.")
@click.option("--fields", help="Comma-separated canonical fields to show (default: a summary).")
def preview(file: Path, limit: int, reveal: bool, fields: str | None) -> None:
    """Pull a live sample, map and validate it, show it as a table. Writes nothing."""
    from ehub.normalize import RecordRejected
    from ehub.normalize.canonical import SpecNormalizer
    from ehub.records import License, case_to_json, license_to_json
    from ehub.sources.build import LookupResolver, build_source, describe_connection
    from ehub.sources.loader import load_spec

    spec = load_spec(file)
    settings = Settings.from_env()
    spec = spec.model_copy(update={"batch_size": min(spec.batch_size, max(limit, 1))})
    src = build_source(spec, settings)
    lookups = LookupResolver(spec, src)
    norm = SpecNormalizer(spec)
    default_cols = (
        ["ZZBH", "CZZT", "CZZTDM", "CZZTQHDM", "ZZBFRQ", "ZZYXQJZRQ", "ZZZT"]
        if spec.record_kind == "license"
        else ["BJBH", "SXMC", "SQRMC", "SQRZJHM", "SBQD", "BJZT", "SBSJ"]
    )
    cols = [c.strip() for c in fields.split(",")] if fields else default_cols
    table = Table(
        title=f"{spec.department.name} · {spec.id} ({spec.kind}: "
        f"{describe_connection(spec, settings)}) — preview, nothing written",
        show_lines=False,
    )
    for c in ["#", "source key", "outcome", *cols]:
        table.add_column(c, overflow="fold")
    ok = bad = 0
    try:
        records = itertools.islice((r for b in src.read(None) for r in b.records), limit)
        batch = list(records)
        extra = lookups.resolve([r.payload for r in batch])
    finally:
        src.close()  # no commit: the preview moves no file and commits no offset
    for i, (rec, found) in enumerate(zip(batch, extra, strict=True), 1):
        payload = {**rec.payload, **({"_lookups": found} if found else {})}
        try:
            out = norm.normalize(payload, rec.key, rec.version)
        except RecordRejected as rej:
            bad += 1
            problems = "; ".join(f"{e.reason_code} {e.field}" for e in rej.errors)
            table.add_row(str(i), rec.key, f"[red]{problems}[/]", *["" for _ in cols])
            continue
        ok += 1
        doc = license_to_json(out) if isinstance(out, License) else case_to_json(out)
        person = doc.get("CZZTDMLXDM") == "111" or doc.get("SQRLX") == "0"
        table.add_row(
            str(i),
            rec.key,
            "[green]ok[/]",
            *[_cell(c, doc.get(c), reveal or not person) for c in cols],
        )
    console.print(table)
    console.print(f"{ok} ok, {bad} rejected of {len(batch)} records read (limit {limit})")
    if norm.dropped:
        console.print(f"dropped undeclared fields (contract: drop): {dict(norm.dropped)}")


def _cell(code: str, value: Any, reveal: bool) -> str:
    if value is None:
        return ""
    s = str(value)
    if reveal or code not in _PERSONAL:
        return s
    from ehub import masking

    if code in ("CZZTDM", "SQRZJHM"):
        return masking.mask_id_number(s)
    return masking.mask_name(s)


@source.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
def run(file: Path) -> None:
    """One ingest run (extract + normalize) outside the scheduler, with progress."""
    from ehub.pipeline import extract, normalize
    from ehub.sources.loader import load_spec
    from ehub.store.db import Store

    spec = load_spec(file)
    settings = Settings.from_env()
    store = Store(settings.database_url)
    try:
        store.migrate()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            t1 = bar.add_task(f"extract {spec.id}", total=None)
            r1 = extract.run(settings, store, spec, progress=lambda n: bar.advance(t1, n))
            bar.update(t1, total=r1.counts["read"], completed=r1.counts["read"])
            t2 = bar.add_task(f"normalize {spec.id}", total=r1.counts["new"] or None)
            r2 = normalize.run(settings, store, spec, progress=lambda n: bar.advance(t2, n))
        console.print_json(data={"extract": r1.as_dict(), "normalize": r2.as_dict()})
    finally:
        store.dispose()


@source.command(name="list")
def list_() -> None:
    """Source specs of the sources folder, their DAGs and watermarks."""
    from ehub.pipeline.extract import watermark
    from ehub.sources.loader import default_sources_dir, load_spec, spec_files
    from ehub.store.db import Store

    settings = Settings.from_env()
    store = Store(settings.database_url)
    table = Table(title=f"sources in {default_sources_dir()}")
    for c in ("source", "department", "kind", "records", "DAG", "schedule", "watermark"):
        table.add_column(c, overflow="fold")
    try:
        store.migrate()
        for f in spec_files():
            try:
                s = load_spec(f)
            except SpecError as exc:
                table.add_row(str(f), "[red]invalid[/]", "", "", "", "", str(exc)[:80])
                continue
            wm = watermark(store, s.id) or ""
            table.add_row(
                s.id, s.department.name, s.kind, s.record_kind, s.dag_id, str(s.schedule), wm[:60]
            )
    finally:
        store.dispose()
    console.print(table)
