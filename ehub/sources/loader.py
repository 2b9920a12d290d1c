"""Load source specs from YAML with errors that point at a line and column.

PyYAML's composed node tree keeps the position of every key and value;
pydantic's error locations are mapped back onto it, so a data engineer sees
``sources/x.yaml:14:11: mapping.CZZT.from: …`` rather than a traceback.
Duplicate keys (which YAML loaders silently collapse) are errors too.

Reads local files only; connects to nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ehub.errors import SpecError
from ehub.sources.spec import SourceSpec, spec_from_dict

SOURCES_ENV = "EHUB_SOURCES_DIR"


def default_sources_dir() -> Path:
    """``$EHUB_SOURCES_DIR`` or the ``sources/`` folder of the project."""
    env = os.environ.get(SOURCES_ENV)
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2] / "sources"


def spec_files(folder: Path | None = None) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` spec under ``folder``, sorted."""
    root = folder or default_sources_dir()
    return sorted(p for p in root.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_spec(path: Path | str) -> SourceSpec:
    """Parse and validate one spec; :class:`SpecError` lists every problem found."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(name, [(0, 0, "", f"cannot read the file: {exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(name, [(line, col, "", f"not valid YAML: {problem}")]) from exc
    if node is None:
        raise SpecError(name, [(1, 1, "", "the file is empty")])
    problems = list(_duplicate_keys(node))
    if problems:
        raise SpecError(name, problems)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # composes but does not construct (unknown tag, …)
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(name, [(line, col, "", f"not valid YAML: {problem}")]) from exc
    try:
        spec = spec_from_dict(data)
    except ValidationError as exc:
        raise SpecError(name, [_locate(node, err) for err in exc.errors()]) from exc
    return _resolve_paths(spec, path)


def load_all(folder: Path | None = None) -> Iterator[SourceSpec]:
    for p in spec_files(folder):
        yield load_spec(p)


def find_spec(source_id: str, folder: Path | None = None) -> SourceSpec:
    """The spec whose id (``<department>.<source>``) or DAG id is ``source_id``."""
    for p in spec_files(folder):
        spec = load_spec(p)
        if source_id in (spec.id, spec.dag_id):
            return spec
    raise SpecError(str(folder or default_sources_dir()), [(0, 0, "", f"no spec {source_id!r}")])


def _resolve_paths(spec: SourceSpec, path: Path) -> SourceSpec:
    if spec.files and spec.files.xsd and not Path(spec.files.xsd).is_absolute():
        xsd = str((path.parent / spec.files.xsd).resolve())
        spec = spec.model_copy(update={"files": spec.files.model_copy(update={"xsd": xsd})})
    return spec


def _duplicate_keys(node: yaml.Node, path: str = "") -> Iterator[tuple[int, int, str, str]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                continue  # a complex key: safe_load reports it
            key = k.value
            sub = f"{path}.{key}" if path else str(key)
            if key in seen:
                yield (k.start_mark.line + 1, k.start_mark.column + 1, sub, "duplicate key")
            seen.add(key)
            yield from _duplicate_keys(v, sub)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            yield from _duplicate_keys(v, f"{path}[{i}]")


def _locate(root: yaml.Node, err: Any) -> tuple[int, int, str, str]:
    """Walk the error location down the node tree as far as it goes."""
    node = root
    parts: list[str] = []
    key_node: yaml.Node | None = None
    # A whole-model check (SpecValueError) says where below the model it points.
    cause = (err.get("ctx") or {}).get("error")
    at_key = err["type"] == "extra_forbidden" or bool(getattr(cause, "at_key", False))
    for seg in (*err["loc"], *getattr(cause, "loc", ())):
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == seg:
                    nxt, key_node = v, k
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(seg, int)
            and 0 <= seg < len(node.value)
        ):
            nxt = node.value[seg]
        if nxt is None:
            if isinstance(node, yaml.MappingNode) and err["type"] == "extra_forbidden":
                continue
            if isinstance(seg, str) and seg[:1].isupper():
                continue  # a union member's model name, not a YAML key
            if err["type"] == "missing":
                parts.append(str(seg))
                continue
            break
        node = nxt
        parts.append(str(seg))
    # An unknown key is best shown at the key itself; everything else at the value.
    mark = key_node.start_mark if at_key and key_node is not None else node.start_mark
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "extra_forbidden":
        msg = "unknown key (not part of the source spec)"
    return (mark.line + 1, mark.column + 1, ".".join(parts), msg)
