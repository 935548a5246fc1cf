"""The result contract: validate outcome messages the way Pub/Sub validates them.

`schemas/clip_result.avsc` (beside this module; Terraform attaches it to the results and
errors topics with JSON encoding) is the single source of truth for the outcome message.
Pub/Sub then parses each message body as Avro's JSON encoding, which differs from plain JSON
in one way that matters to us (observed against the official Pub/Sub emulator;
`tests/infra/test_avro_contract.py` re-checks it there):

* a union value that is not null is wrapped in an object keyed by its branch:
  `{"video_no": {"string": "v1"}}`, `{"error": {"Error": {...}}}`; a bare `null` is accepted
  (so is `{"null": null}`); a bare non-null value in a union field is REJECTED;
* every field must be present, even one the schema gives a default;
* keys the schema does not know are ignored;
* ints and longs accept integral JSON numbers, doubles any JSON number; enums take a symbol.

`validate_message(message)` applies exactly these rules to a message dict as it would be
published. `to_avro_json(plain)` turns the plain-JSON shape (`messages.success_message`) into
that encoding and `from_avro_json` reverses it, so a publisher or a subscriber can convert.

Why not fastavro (tests/infra/test_avro_contract.py decodes every published body with its
Avro JSON reader and gets the same result): it is not equivalent where it matters, since its
reader accepts bodies Pub/Sub rejects (a defaulted field left out, `1.5` for an int) and
refuses the plain JSON `from_avro_json` passes through (`clipsearch report` and `results` read
both forms); and `import fastavro` adds 45-90 ms to the function's 2.3-3.5 s cold import
(`python -X importtime -c "import clipsearch.entrypoint; import fastavro"`, 5 runs, 2 shared
cores). It stays a test dependency.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "clip_result.avsc"

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

Schema = Any  # a parsed .avsc node: str, list (union) or dict


class ContractError(ValueError):
    """A message does not match the schema; the text names the path that failed."""


@cache
def schema() -> Schema:
    parsed: Schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return parsed


@cache
def _named_types() -> dict[str, dict[str, Any]]:
    named: dict[str, dict[str, Any]] = {}

    def walk(node: Schema) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                named[node["name"]] = node
            for field in node.get("fields", []):
                walk(field["type"])
            for key in ("items", "values"):
                if key in node:
                    walk(node[key])

    walk(schema())
    return named


def _resolve(node: Schema) -> Schema:
    if isinstance(node, str) and node not in _PRIMITIVES:
        return _named_types()[node]
    return node


def _branch_name(node: Schema) -> str:
    node = _resolve(node)
    if isinstance(node, str):
        return node
    if node["type"] in ("record", "enum", "fixed"):
        return str(node["name"])
    return str(node["type"])  # array, map


def validate_message(message: Any) -> None:
    """Raise ContractError unless Pub/Sub would accept `message` (Avro JSON encoding)."""
    _check(message, schema(), "$")


def validate_plain_message(message: Any) -> None:
    """Validate the plain-JSON shape (bare union values), e.g. the stored result JSON."""
    validate_message(to_avro_json(message))


def _check(value: Any, node: Schema, path: str) -> None:
    node = _resolve(node)
    if isinstance(node, list):
        _check_union(value, node, path)
        return
    kind = node if isinstance(node, str) else node["type"]
    if isinstance(kind, (dict, list)):  # {"type": {...}} wrapping
        _check(value, kind, path)
        return
    check = _CHECKS.get(kind)
    if check is None:
        raise ContractError(f"{path}: unsupported schema type {kind!r}")
    check(value, node, kind, path)


def _check_null(value: Any, node: Schema, kind: str, path: str) -> None:
    if value is not None:
        raise ContractError(f"{path}: expected null, got {value!r}")


def _check_boolean(value: Any, node: Schema, kind: str, path: str) -> None:
    if not isinstance(value, bool):
        raise ContractError(f"{path}: expected boolean, got {value!r}")


def _check_integer(value: Any, node: Schema, kind: str, path: str) -> None:
    number = value
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    low, high = _INT_RANGE[kind]
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise ContractError(f"{path}: expected {kind}, got {value!r}")


def _check_real(value: Any, node: Schema, kind: str, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{path}: expected {kind}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ContractError(f"{path}: JSON has no {value!r}")


def _check_text(value: Any, node: Schema, kind: str, path: str) -> None:
    if not isinstance(value, str):
        raise ContractError(f"{path}: expected {kind}, got {value!r}")


def _check_enum(value: Any, node: Schema, kind: str, path: str) -> None:
    if value not in node["symbols"]:
        raise ContractError(f"{path}: {value!r} is not one of {node['symbols']}")


def _check_array(value: Any, node: Schema, kind: str, path: str) -> None:
    if not isinstance(value, list):
        raise ContractError(f"{path}: expected an array, got {value!r}")
    for index, item in enumerate(value):
        _check(item, node["items"], f"{path}[{index}]")


def _check_map(value: Any, node: Schema, kind: str, path: str) -> None:
    if not isinstance(value, dict):
        raise ContractError(f"{path}: expected a map, got {value!r}")
    for key, item in value.items():
        _check(item, node["values"], f"{path}.{key}")


def _check_record(value: Any, node: Schema, kind: str, path: str) -> None:
    if not isinstance(value, dict):
        raise ContractError(f"{path}: expected a {node['name']} object, got {value!r}")
    for field in node["fields"]:
        name = field["name"]
        if name not in value:  # Pub/Sub does not fill in defaults
            raise ContractError(f"{path}.{name}: missing (every field must be present)")
        _check(value[name], field["type"], f"{path}.{name}")


# One check per schema type: (value, its schema node, the type's name, the value's path).
_CHECKS: dict[str, Callable[[Any, Schema, str, str], None]] = {
    "null": _check_null,
    "boolean": _check_boolean,
    "int": _check_integer,
    "long": _check_integer,
    "float": _check_real,
    "double": _check_real,
    "string": _check_text,
    "bytes": _check_text,
    "enum": _check_enum,
    "array": _check_array,
    "map": _check_map,
    "record": _check_record,
}


def _check_union(value: Any, branches: list[Schema], path: str) -> None:
    names = [_branch_name(b) for b in branches]
    if value is None and "null" in names:
        return
    if not isinstance(value, dict) or len(value) != 1:
        raise ContractError(
            f"{path}: a non-null union value must be wrapped as {{<branch>: value}}"
            f" with a branch in {names}, got {value!r}"
        )
    ((name, inner),) = value.items()
    if name not in names:
        raise ContractError(f"{path}: union branch {name!r} is not one of {names}")
    _check(inner, branches[names.index(name)], f"{path}<{name}>")


def to_avro_json(plain: Any, node: Schema | None = None) -> Any:
    """Wrap every non-null union value in `plain` as Avro's JSON encoding requires."""
    node = _resolve(schema() if node is None else node)
    if isinstance(node, list):
        if plain is None:
            return None
        for branch in node:
            if branch == "null":
                continue
            try:
                _check(to_avro_json(plain, branch), branch, "$")
            except ContractError:
                continue
            return {_branch_name(branch): to_avro_json(plain, branch)}
        return plain  # matches no branch: leave it for validate_message to report
    if isinstance(node, dict):
        kind = node["type"]
        if isinstance(kind, (dict, list)):
            return to_avro_json(plain, kind)
        if kind == "record" and isinstance(plain, dict):
            out = dict(plain)
            for field in node["fields"]:
                if field["name"] in out:
                    out[field["name"]] = to_avro_json(out[field["name"]], field["type"])
            return out
        if kind == "array" and isinstance(plain, list):
            return [to_avro_json(item, node["items"]) for item in plain]
        if kind == "map" and isinstance(plain, dict):
            return {k: to_avro_json(v, node["values"]) for k, v in plain.items()}
    return plain


def from_avro_json(encoded: Any, node: Schema | None = None) -> Any:
    """Unwrap union values: what a subscriber does to get the plain shape back."""
    node = _resolve(schema() if node is None else node)
    if isinstance(node, list):
        if isinstance(encoded, dict) and len(encoded) == 1:
            ((name, inner),) = encoded.items()
            names = [_branch_name(b) for b in node]
            if name in names:
                return from_avro_json(inner, node[names.index(name)])
        return encoded
    if isinstance(node, dict):
        kind = node["type"]
        if isinstance(kind, (dict, list)):
            return from_avro_json(encoded, kind)
        if kind == "record" and isinstance(encoded, dict):
            out = dict(encoded)
            for field in node["fields"]:
                if field["name"] in out:
                    out[field["name"]] = from_avro_json(out[field["name"]], field["type"])
            return out
        if kind == "array" and isinstance(encoded, list):
            return [from_avro_json(item, node["items"]) for item in encoded]
        if kind == "map" and isinstance(encoded, dict):
            return {k: from_avro_json(v, node["values"]) for k, v in encoded.items()}
    return encoded
