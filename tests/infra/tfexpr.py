"""Just enough of Terraform's expression language to read our own strings back.

python-hcl2 hands strings back as written (escapes kept, heredocs with their markers, `${...}`
unevaluated). `text` undoes the quoting; `Resolver` substitutes the interpolations we use
(locals, variables, resource names) with the values a test chooses, and fails on any other.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any

from tests.infra.hcl import config

_HEREDOC = re.compile(r"^<<-?(\w+)\n(.*?)\n\s*\1$", re.DOTALL)
_INTERP = re.compile(r"\$\{([^{}]+)\}")
_ESCAPES = {'\\"': '"', "\\\\": "\\", "\\n": "\n", "\\t": "\t"}


def text(raw: str) -> str:
    """The string value of a parsed HCL string literal (quoted or heredoc)."""
    heredoc = _HEREDOC.match(raw)
    if heredoc:
        body = heredoc.group(2)
        return textwrap.dedent(body) if raw.startswith("<<-") else body
    return re.sub(r'\\["\\nt]', lambda m: _ESCAPES[m.group(0)], raw)


# A deployment's values for the variables the resolved strings use.
EXAMPLE_VARS: dict[str, Any] = {
    "name_prefix": "acme-clipsearch",
    "region": "us-central1",
    "project_id": "my-project",
}


class Resolver:
    """Substitutes `${local.X}`, `${local.names.X}`, `${var.X}`, `${google_logging_metric.X.name}`
    and `${each.key}`; anything else is an error (the test then does not know the value)."""

    def __init__(self, variables: Mapping[str, Any] | None = None) -> None:
        defaults = {n: b.get("default") for n, b in config()["variable"].items()}
        self.vars = {**defaults, **EXAMPLE_VARS, **(variables or {})}

    def value(self, expr: str, each_key: str | None = None) -> str:
        expr = expr.strip()
        if expr == "each.key" and each_key is not None:
            return each_key
        if expr.startswith("var."):
            return str(self.vars[expr[4:]])
        if expr.startswith("local.names."):
            return self.resolve(text(config()["locals"]["names"][expr[12:]]))
        if expr.startswith("local."):
            found = config()["locals"][expr[6:]]
            assert isinstance(found, str), f"{expr} is not a string local"
            return self.resolve(text(found))
        metric = re.fullmatch(r"google_logging_metric\.(\w+)\.name", expr)
        if metric:
            return self.resolve(
                text(config()["resource"]["google_logging_metric"][metric[1]]["name"])
            )
        raise KeyError(f"the test cannot evaluate ${{{expr}}}")

    def resolve(self, raw: str, each_key: str | None = None) -> str:
        previous = None
        while previous != raw:
            previous = raw
            raw = _INTERP.sub(lambda m: self.value(m.group(1), each_key), raw)
        return raw


def for_each_keys(body: Mapping[str, Any]) -> list[str | None]:
    """The instance keys of a resource: [None] without for_each; literal sets and maps only."""
    spec = body.get("for_each")
    if spec is None:
        return [None]
    if isinstance(spec, dict):
        return [k for k in spec if not k.startswith("__")]
    match = re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", str(spec), re.DOTALL)
    assert match, f"for_each the test cannot expand: {spec}"
    return re.findall(r'\\?"([^"\\]+)\\?"', match[1])
