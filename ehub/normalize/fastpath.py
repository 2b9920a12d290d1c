"""Generated code for the per-record loop of :class:`~ehub.normalize.canonical.SpecNormalizer`.

The closures of :mod:`ehub.sources.mapping` cost a few Python calls per field;
at 15–25 fields per record that overhead dominates normalization. For the
common field shape — one top-level source field, ``trim`` / ``halfwidth`` /
``upper`` transforms, an optional code-list translation, and a text, code,
division or USCC check — this module writes the equivalent statements inline
into one generated function (the technique attrs and pydantic use). Any other
field calls its closures, so behaviour is the same whichever path a field
takes; ``tests/ehub/test_fastpath.py`` holds both paths to the same results.

Generated from the validated spec only (field names go through ``repr``), never
from record data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ehub.errors import RecordError
from ehub.sources.mapping import _FULLWIDTH, _text, code_error
from ehub.sources.spec import FieldMap

ValuesFn = Callable[[Mapping[str, Any], list[RecordError], set[str]], dict[str, Any]]
FastField = tuple[str, FieldMap, str | None, Callable[..., Any], Callable[..., Any]]
"""(target, field map, check kind or None, getter, checker)."""

#: Check kinds whose getter returns a parsed value or None (never "" or ()).
_TYPED_KINDS = frozenset({"date", "datetime", "int"})
_INLINE_TRANSFORMS = {"trim": ".strip()", "halfwidth": ".translate(FW)", "upper": ".upper()"}


def inline_kind(fm: FieldMap, kind: str | None) -> bool:
    """Whether a field can take the inline path."""
    return (
        fm.from_ is not None
        and "." not in fm.from_
        and all(t in _INLINE_TRANSFORMS for t in fm.transform)
        and fm.regex is None
        and fm.lookup is None
        and fm.default is None
        and not fm.date
        and not fm.datetime_
        and not fm.integer
        and fm.split is None
        and kind not in _TYPED_KINDS
    )


def constant_value(fm: FieldMap, get: Callable[..., Any], check: Callable[..., Any]) -> Any:
    """The checked value of a ``const`` field that passes its check, else ``_NOT_CONSTANT``.

    A constant (with its transforms and code-list translation) does not depend
    on the record, so its checked value is computed once, at compile time.
    """
    if fm.const is None or fm.lookup is not None:
        return _NOT_CONSTANT
    errors: list[RecordError] = []
    try:
        value = check(get({}), errors)
    except RecordError:
        return _NOT_CONSTANT
    return _NOT_CONSTANT if errors else value


_NOT_CONSTANT = object()


def compile_values(
    fields: list[FastField],
    *,
    codelists: Mapping[str, Mapping[str, str]],
    known_codes: Mapping[str, frozenset[str]],
    limits: Mapping[str, int],
    mojibake: Callable[[str], Any],
    known_division: Callable[[str], bool],
    check_uscc: Callable[[str, str], str],
) -> ValuesFn:
    """``fields``: (target, field map, check kind or None, getter, checker) per field."""
    ns: dict[str, Any] = {
        "RecordError": RecordError,
        "FW": _FULLWIDTH,
        "_text": _text,
        "MOJI": mojibake,
        "KNOWN_DIV": known_division,
        "USCC": check_uscc,
    }
    lines = ["def values_of(p, errors, absent):", "    values = {}"]
    for i, (target, fm, kind, get, check) in enumerate(fields):
        t = repr(target)
        ns[f"GET_{i}"], ns[f"CHECK_{i}"] = get, check
        lines += [f"    if {t} in absent:", f"        values[{t}] = None", "    else:"]
        if (const := constant_value(fm, get, check)) is not _NOT_CONSTANT:
            ns[f"CONST_{i}"] = const
            lines += [f"        values[{t}] = CONST_{i}"]
            continue
        if kind in _TYPED_KINDS:  # the getter parsed it: only emptiness is left to check
            lines += [
                "        try:",
                f"            v = GET_{i}(p)",
                f"            values[{t}] = CHECK_{i}(v, errors) if v is None else v",
                "        except RecordError as exc:",
                "            errors.append(exc)",
                f"            values[{t}] = None",
            ]
            continue
        if not inline_kind(fm, kind):
            lines += [
                "        try:",
                f"            values[{t}] = CHECK_{i}(GET_{i}(p), errors)",
                "        except RecordError as exc:",
                "            errors.append(exc)",
                f"            values[{t}] = None",
            ]
            continue
        steps = "".join(_INLINE_TRANSFORMS[s] for s in fm.transform)
        body = [
            f"v = p.get({fm.from_!r})",
            f"v = (v if v.__class__ is str else _text(v)){steps}",
            "ok = True",
        ]
        if fm.codelist is not None:
            ns[f"TABLE_{i}"] = dict(codelists[fm.codelist])
            ns[f"CODEERR_{i}"] = lambda v, target=target, label=fm.from_, name=fm.codelist: (
                code_error(target, label, name, v)
            )
            body += [
                "if v:",
                f"    c = TABLE_{i}.get(v)",
                "    if c is None:",
                f"        errors.append(CODEERR_{i}(v))",
                "        ok = False",
                "    else:",
                "        v = c",
            ]
        body += [
            "if not ok:",
            f"    values[{t}] = None",
            "elif not v:",
            f"    values[{t}] = CHECK_{i}(v, errors)",
            "else:",
        ]
        if kind == "text":
            body.append(
                f"    values[{t}] = v if len(v) <= {limits[target]} and not MOJI(v) "
                f"else CHECK_{i}(v, errors)"
            )
        elif kind == "code":
            ns[f"KNOWN_{i}"] = known_codes[target]
            body.append(f"    values[{t}] = v if v in KNOWN_{i} else CHECK_{i}(v, errors)")
        elif kind == "division":
            body.append(f"    values[{t}] = v if KNOWN_DIV(v) else CHECK_{i}(v, errors)")
        elif kind == "uscc":
            body += [
                "    try:",
                f"        values[{t}] = USCC(v, {t})",
                "    except RecordError as exc:",
                "        errors.append(exc)",
                f"        values[{t}] = None",
            ]
        else:  # holder / applicant codes, identifiers, KZ without a rule: the field's check
            body += [
                "    try:",
                f"        values[{t}] = CHECK_{i}(v, errors)",
                "    except RecordError as exc:",
                "        errors.append(exc)",
                f"        values[{t}] = None",
            ]
        lines += ["        " + b for b in body]
    lines.append("    return values")
    exec(compile("\n".join(lines), "<ehub.normalize.fastpath>", "exec"), ns)
    fn: ValuesFn = ns["values_of"]
    return fn
