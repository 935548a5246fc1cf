"""The README's configuration table lists exactly the settings the code reads."""

from __future__ import annotations

import re

from clipsearch.settings import SETTINGS
from tests.infra.hcl import REPO

ROW = re.compile(r"^\| `(CLIPSEARCH_[A-Z0-9_]+)`", re.MULTILINE)


def test_readme_configuration_table_lists_exactly_the_settings() -> None:
    readme = REPO / "README.md"
    assert readme.is_file(), "README.md is missing"
    documented = ROW.findall(readme.read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "a setting is listed twice"
    expected = {s.env for s in SETTINGS}
    assert set(documented) == expected, (
        f"missing from README: {sorted(expected - set(documented))};"
        f" not settings: {sorted(set(documented) - expected)}"
    )


DEFAULT = re.compile(r"^\| `(CLIPSEARCH_[A-Z0-9_]+)` \| ([^|]*) \|", re.MULTILINE)


def test_readme_defaults_are_the_codes_defaults() -> None:
    """settings == README: a backticked default is the code's; "(required)" means none and
    "(empty...)" means the empty string."""
    defaults = {s.env: s.default for s in SETTINGS}
    rows = DEFAULT.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert {name for name, _ in rows} == set(defaults)
    for name, cell in rows:
        shown = cell.strip()
        if shown == "(required)":
            assert defaults[name] is None, name
        elif shown.startswith("(empty"):
            assert defaults[name] == "", name
        else:
            assert shown == f"`{defaults[name]}`", name


def test_deploy_doc_stores_the_key_with_one_command_reading_stdin() -> None:
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "gcloud secrets versions add" in text
    assert "--data-file=-" in text
