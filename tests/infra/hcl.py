"""Load infra/*.tf with python-hcl2 into plain dicts: {"resource": {type: {name: body}}, ...}."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

_META_KEYS = {
    "__comments__",
    "__inline_comments__",
    "__is_block__",
    "__start_line__",
    "__end_line__",
}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if k not in _META_KEYS}
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


@cache
def parsed_files() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            out[path.name] = _clean(hcl2.load(handle))
    return out


@cache
def config() -> dict[str, Any]:
    """All files merged by block kind. resource/data: {type: {name: body}}; others by name."""
    merged: dict[str, Any] = {
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "locals": {},
        "terraform": [],
    }
    for doc in parsed_files().values():
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        merged[kind].setdefault(rtype, {})[name] = body
        for kind in ("variable", "output"):
            for entry in doc.get(kind, []):
                merged[kind].update(entry)
        for entry in doc.get("locals", []):
            merged["locals"].update(entry)
        merged["terraform"].extend(doc.get("terraform", []))
    return merged


def resources(rtype: str) -> dict[str, Any]:
    found: dict[str, Any] = config()["resource"].get(rtype, {})
    return found


def resource(rtype: str, name: str) -> Any:
    return resources(rtype)[name]


def block(body: Any, name: str) -> Any:
    """The single nested block `name` of a parsed body (hcl2 gives blocks as lists)."""
    value = body[name]
    if isinstance(value, list):
        assert len(value) == 1, f"expected one {name} block, found {len(value)}"
        return value[0]
    return value


def all_blocks(body: Any, name: str) -> list[Any]:
    value = body.get(name, [])
    return value if isinstance(value, list) else [value]
