"""PostgreSQL array literals (``{"a","b"}``, ``{1,2}``) for statements over whole batches.

The bulk statements of the publish path (``unnest`` inserts and updates, ``= ANY``
look-ups) pass one array per column. psycopg adapts a Python list element by
element in Python (~1.2 µs an element); a literal joined here costs a tenth of
that, and the server parses it as fast. Bind the result as a string and cast it
in SQL: ``CAST(:ids AS bigint[])``.

Every text element is quoted, so no value (empty, ``NULL``, braces, commas,
blanks, quotes, backslashes, any Unicode) is ever read as anything but itself;
``None`` is the SQL ``NULL``. PostgreSQL text cannot hold NUL characters, so
neither can these literals. Must not execute anything.
"""

from __future__ import annotations

from collections.abc import Iterable


def _quoted(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + value + '"'


def text_array(values: Iterable[str | None]) -> str:
    """A ``text[]`` literal of ``values``, in order."""
    items = list(values)
    if not items:
        return "{}"
    try:  # the common case, strings with nothing to escape: one join, one scan
        joined = "\x00".join(items)  # type: ignore[arg-type]  # a None fails the join
    except TypeError:
        joined = None
    if (
        joined is not None
        and '"' not in joined
        and "\\" not in joined
        and joined.count("\x00") == len(items) - 1  # no NUL inside a value
    ):
        return '{"' + joined.replace("\x00", '","') + '"}'
    return "{" + ",".join("NULL" if v is None else _quoted(v) for v in items) + "}"


def int_array(values: Iterable[int | None]) -> str:
    """An integer array literal (``int[]``, ``bigint[]``) of ``values``, in order."""
    items = list(values)
    try:  # plain ints: one join
        return "{" + ",".join(map(int.__repr__, items)) + "}"  # type: ignore[arg-type]
    except TypeError:
        return "{" + ",".join("NULL" if v is None else str(int(v)) for v in items) + "}"
