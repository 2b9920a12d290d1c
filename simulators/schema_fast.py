"""A fast yes/unsure pre-check compiled from a JSON Schema (draft 2020-12), for the simulators.

``jsonschema`` walks the schema for every item it validates: about 0.7 ms for
one case record, most of a platform simulator's time per batch. The items that
reach a simulator are almost always valid, so :func:`compile_precheck` turns a
schema into one generated Python function (the technique of fastjsonschema)
that answers ``True`` only when the instance is certainly valid. ``False``
means "not sure": the caller then runs ``jsonschema`` itself, which decides
and words the errors. Nothing is checked less: a ``True`` is only given when
every assertion keyword of every schema the instance meets was evaluated here.

Exact, with ``jsonschema``'s own semantics: ``type``, ``enum`` / ``const`` (of
strings, integers and null), ``minLength`` / ``maxLength`` (code points),
``pattern`` (``re.search``), ``minimum`` / ``maximum`` / ``exclusiveMinimum`` /
``exclusiveMaximum``, ``required``, ``properties``, ``additionalProperties``,
``propertyNames``, ``items``, ``minItems`` / ``maxItems``, ``uniqueItems`` (of
strings), ``format`` (through the validator's own format checker), ``allOf``,
``anyOf`` and ``$ref`` (``#/pointer`` in the same file, ``<file>.json#/pointer``
in the schema folder). Every other assertion keyword (``oneOf``, ``not``,
``if``, ``prefixItems``…) and every value outside those shapes (a float where an
integer is expected, an enum of objects) compiles to "not sure". Keywords that
``jsonschema`` does not assert (``description``, ``contentEncoding``…) are
ignored, as it ignores them.

The instance must be what ``json.loads`` returns (dict, list, str, int, float,
bool, None). Generated only from the schema files, never from request data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Precheck = Callable[[Any], bool]
DIALECT = "https://json-schema.org/draft/2020-12/schema"

_TYPE_TESTS = {
    "string": "isinstance({v}, str)",
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "null": "{v} is None",
    "boolean": "({v} is True or {v} is False)",
    # A float with an integral value is an integer to jsonschema: "not sure" here.
    "integer": "{v}.__class__ is int",
    "number": "({v}.__class__ is int or {v}.__class__ is float)",
}
_NUMBER = "({v}.__class__ is int or {v}.__class__ is float)"
_BOUNDS = {"minimum": "<", "maximum": ">", "exclusiveMinimum": "<=", "exclusiveMaximum": ">="}
_STRING_KEYWORDS = ("minLength", "maxLength", "pattern")
_OBJECT_KEYWORDS = ("required", "properties", "additionalProperties", "propertyNames")
_ARRAY_KEYWORDS = ("items", "minItems", "maxItems", "uniqueItems")
_HANDLED = frozenset(
    {"type", "enum", "const", "format", "allOf", "anyOf", "$ref", *_BOUNDS, *_STRING_KEYWORDS,
     *_OBJECT_KEYWORDS, *_ARRAY_KEYWORDS}
)  # fmt: skip


class _Unsure(Exception):
    """A schema shape this compiler does not evaluate exactly."""


class _Compiler:
    def __init__(
        self, read: Callable[[str], Any], asserted: frozenset[str], format_checker: Any
    ) -> None:
        self.read = read
        self.asserted = asserted  # the keywords jsonschema asserts (its VALIDATORS)
        self.format_checker = format_checker
        self.docs: dict[str, Any] = {}
        self.functions: dict[tuple[str, str], str] = {}
        self.pending: list[tuple[str, str, str, Any]] = []
        self.names: dict[str, Any] = {"_fmt": format_checker}
        self.lines: list[str] = []
        self._n = 0

    def fresh(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any, prefix: str = "_c") -> str:
        name = self.fresh(prefix)
        self.names[name] = value
        return name

    def document(self, name: str) -> Any:
        if name not in self.docs:
            try:
                doc = self.read(name)
            except (LookupError, OSError, ValueError) as exc:
                raise _Unsure(f"schema {name}: {exc}") from exc
            if isinstance(doc, dict) and doc.get("$schema", DIALECT) != DIALECT:
                raise _Unsure(f"schema {name} uses another dialect")
            self.docs[name] = doc
        return self.docs[name]

    def function(self, doc: str, pointer: str) -> str:
        """The generated function of the subschema at ``doc#pointer`` (compiled once)."""
        key = (doc, pointer)
        if key not in self.functions:
            schema = _resolve(self.document(doc), pointer)  # _Unsure: nothing registered
            self.functions[key] = name = self.fresh("_s")
            self.pending.append((name, doc, pointer, schema))
        return self.functions[key]

    def build(self, doc: str) -> Precheck:
        entry = self.function(doc, "")
        while self.pending:
            name, sdoc, _pointer, schema = self.pending.pop()
            try:
                body = self.body(schema, "v", sdoc, 1)
            except _Unsure:
                body = ["    return False"]
            self.lines += [f"def {name}(v):", *body, "    return True", ""]
        source = "\n".join(self.lines)
        scope = dict(self.names)
        exec(compile(source, f"<schema precheck {doc}>", "exec"), scope)
        fn: Precheck = scope[entry]
        return fn

    def body(self, schema: Any, v: str, doc: str, depth: int) -> list[str]:
        """Statements that ``return False`` unless ``v`` is certainly valid."""
        pad = "    " * depth
        if schema is True:
            return []
        if not isinstance(schema, dict):
            raise _Unsure("boolean false or malformed schema")
        if "$id" in schema and not any(schema is d for d in self.docs.values()):
            raise _Unsure("an embedded resource ($id below the root) changes the base URI")
        unknown = (schema.keys() & self.asserted) - _HANDLED
        if unknown:
            raise _Unsure(f"keywords {sorted(unknown)}")
        out: list[str] = []
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else list(types)
            if not all(t in _TYPE_TESTS for t in names):
                raise _Unsure(f"type {types!r}")
            test = " or ".join(_TYPE_TESTS[t].format(v=v) for t in names)
            out.append(f"{pad}if not ({test}): return False")
        for word in ("enum", "const"):
            if word in schema:
                out += self.members(schema[word] if word == "enum" else [schema[word]], v, pad)
        if "format" in schema:
            out.append(
                f"{pad}if not _fmt.conforms({v}, {self.const(schema['format'])}): return False"
            )
        for word, op in _BOUNDS.items():
            if word in schema:
                bound = schema[word]
                if bound.__class__ not in (int, float):
                    raise _Unsure(f"{word} {bound!r}")
                out.append(f"{pad}if {_NUMBER.format(v=v)} and {v} {op} {bound!r}: return False")
        single = types if isinstance(types, str) else None
        out += self.guarded(single, "string", "isinstance({v}, str)",
                            self.string(schema, v, depth + 1), v, pad)  # fmt: skip
        out += self.guarded(single, "object", "isinstance({v}, dict)",
                            self.object(schema, v, doc, depth + 1), v, pad)  # fmt: skip
        out += self.guarded(single, "array", "isinstance({v}, list)",
                            self.array(schema, v, doc, depth + 1), v, pad)  # fmt: skip
        for sub in schema.get("allOf", ()):
            out += self.body(sub, v, doc, depth)
        if "anyOf" in schema:
            calls = []
            for sub in schema["anyOf"]:
                calls.append(f"{self.inline_function(sub, doc)}({v})")
            out.append(f"{pad}if not ({' or '.join(calls)}): return False")
        if "$ref" in schema:
            out.append(f"{pad}if not {self.reference(schema['$ref'], doc)}({v}): return False")
        return out

    def guarded(
        self, single: str | None, kind: str, test: str, lines: list[str], v: str, pad: str
    ) -> list[str]:
        """``lines`` (indented one level deeper) under ``if <kind test>:`` unless the
        schema's single type already is ``kind`` (then they run as they are)."""
        if not lines:
            return []
        if single == kind:
            return [line[4:] for line in lines]
        return [f"{pad}if {test.format(v=v)}:", *lines]

    def members(self, allowed: list[Any], v: str, pad: str) -> list[str]:
        if not all(x is None or x.__class__ in (str, int) for x in allowed):
            raise _Unsure("enum / const of other values")
        strings = frozenset(x for x in allowed if x.__class__ is str)
        ints = frozenset(x for x in allowed if x.__class__ is int)
        tests = [f"(isinstance({v}, str) and {v} in {self.const(strings)})"] if strings else []
        if ints:
            tests.append(f"({v}.__class__ is int and {v} in {self.const(ints)})")
        if None in allowed:
            tests.append(f"{v} is None")
        return [f"{pad}if not ({' or '.join(tests) or 'False'}): return False"]

    def string(self, schema: dict[str, Any], v: str, depth: int) -> list[str]:
        pad = "    " * depth
        out = []
        low, high = schema.get("minLength"), schema.get("maxLength")
        for bound, op in ((low, "<"), (high, ">")):
            if bound is not None:
                if bound.__class__ is not int:
                    raise _Unsure("length bound")
                out.append(f"{pad}if len({v}) {op} {bound}: return False")
        if "pattern" in schema:
            search = self.const(re.compile(schema["pattern"]).search, "_p")
            out.append(f"{pad}if {search}({v}) is None: return False")
        return out

    def object(self, schema: dict[str, Any], v: str, doc: str, depth: int) -> list[str]:
        pad = "    " * depth
        out: list[str] = []
        if "required" in schema:
            out.append(f"{pad}if not {v}.keys() >= {self.const(frozenset(schema['required']))}:"
                       " return False")  # fmt: skip
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if extra is False:
            out.append(f"{pad}if not {v}.keys() <= {self.const(frozenset(props))}: return False")
        elif extra is not True:
            check = self.inline_function(extra, doc)
            known = self.const(frozenset(props))
            out.append(f"{pad}for _k, _x in {v}.items():")
            out.append(f"{pad}    if _k not in {known} and not {check}(_x): return False")
        if "propertyNames" in schema:
            check = self.inline_function(schema["propertyNames"], doc)
            out.append(f"{pad}for _k in {v}:")
            out.append(f"{pad}    if not {check}(_k): return False")
        for name, sub in props.items():
            x = self.fresh("_x")
            try:
                lines = self.body(sub, x, doc, depth + 1)
            except _Unsure:  # not sure whenever the property is there
                lines = [f"{pad}    return False"]
            if lines:
                out.append(f"{pad}if {name!r} in {v}:")
                out.append(f"{pad}    {x} = {v}[{name!r}]")
                out += lines
        return out

    def array(self, schema: dict[str, Any], v: str, doc: str, depth: int) -> list[str]:
        pad = "    " * depth
        out: list[str] = []
        for word, op in (("minItems", "<"), ("maxItems", ">")):
            if word in schema:
                if schema[word].__class__ is not int:
                    raise _Unsure(word)
                out.append(f"{pad}if len({v}) {op} {schema[word]}: return False")
        if schema.get("uniqueItems") is True:
            out.append(f"{pad}if not all(isinstance(_i, str) for _i in {v}) or "
                       f"len(set({v})) != len({v}): return False")  # fmt: skip
        if "items" in schema:
            item = self.fresh("_i")
            try:
                lines = self.body(schema["items"], item, doc, depth + 1)
            except _Unsure:
                lines = [f"{pad}    return False"]
            if lines:
                out.append(f"{pad}for {item} in {v}:")
                out += lines
        return out

    def inline_function(self, schema: Any, doc: str) -> str:
        """A separate generated function for a subschema used in an expression."""
        name = self.fresh("_s")
        try:
            body = self.body(schema, "v", doc, 1)
        except _Unsure:
            body = ["    return False"]
        self.lines += [f"def {name}(v):", *body, "    return True", ""]
        return name

    def reference(self, ref: str, doc: str) -> str:
        target, _, pointer = ref.partition("#")
        if target and not re.fullmatch(r"[A-Za-z0-9_.-]+\.json", target):
            raise _Unsure(f"$ref {ref!r}")
        if pointer and not pointer.startswith("/"):
            raise _Unsure(f"$ref {ref!r}")
        return self.function(target or doc, pointer)


def _resolve(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.split("/")[1:] if pointer else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _Unsure(f"pointer {pointer!r}")
    return node


def compile_precheck(
    schema: Any, name: str, read: Callable[[str], Any], validator_class: Any
) -> Precheck:
    """The pre-check of ``schema`` (the file ``name``); ``read(file name)`` returns a
    referenced schema file's JSON (LookupError when absent); ``validator_class`` is
    the jsonschema class that validates it (its keywords and format checker).
    A schema of another dialect than draft 2020-12 gets a pre-check never sure."""
    if not isinstance(schema, dict) or schema.get("$schema", DIALECT) != DIALECT:
        return never_sure
    asserted = frozenset(validator_class.VALIDATORS)
    compiler = _Compiler(read, asserted, validator_class.FORMAT_CHECKER)
    compiler.docs[name] = schema
    return compiler.build(name)


def never_sure(_instance: Any) -> bool:
    return False
