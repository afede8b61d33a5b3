"""Each fact is stated once: settings live in their tables, and what shows them is made from them.

These read the source, not the running system: a second place that reads an `NMCP_*` variable
is exactly what a behaviour test would miss until the two disagree.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from hooks.settings import OperatorSettings
from nmcp.model import settings, vocabulary
from tests.support import ROOT, VENV_BIN

PACKAGES = ("nmcp", "hooks", "gateway", "crds")
VOCABULARY = Path("nmcp/model/vocabulary.py")
SETTINGS_TABLES = {Path("nmcp/model/settings.py"), Path("gateway/config.py"), Path("hooks/settings.py")}
VARIABLE = re.compile(r"NMCP_[A-Z0-9_]+$")
PREFIX = re.compile(r"NMCP_[A-Z0-9_]*$")  # the start of a name built in an f-string


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT), ast.parse(path.read_text(), str(path))


def variable_reads(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Where a module names an NMCP_* variable by itself (to read or set it), rather than in a sentence."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.match(node.value):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
                and PREFIX.match(str(node.values[0].value)):
            yield node.lineno, f"f-string {node.values[0].value!s}..."
        elif isinstance(node, ast.Attribute) and node.attr == "from_prefixed_env":
            yield node.lineno, "Flask's from_prefixed_env"


def test_no_nmcp_variable_is_read_outside_the_settings_tables() -> None:
    found = [f"{path}:{line}: {what}" for path, tree in sources() if path not in SETTINGS_TABLES
             for line, what in variable_reads(tree)]
    assert not found, "read these through the settings tables (gateway/config.py, hooks/settings.py):\n" \
        + "\n".join(found)


def test_the_check_sees_a_read() -> None:
    tree = ast.parse('import os\nos.environ.get("NMCP_SECRET")\nenv[f"NMCP_{name}"] = 1\n'
                     'app.config.from_prefixed_env("X")\nlog("set NMCP_MAX_BODY higher")\n'
                     'raise E(f"NMCP_MAX_BODY: got {raw}")\nSKIP = "NMCP_"\n')
    assert [line for line, _ in variable_reads(tree)] == [2, 3, 4]


@pytest.mark.parametrize(("table", "marker"), [(Config, "gateway"), (OperatorSettings, "operator")])
def test_readme_tables_are_the_settings_tables(table: type, marker: str) -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.search(rf"<!-- settings: {marker} -->\n(.*?)<!-- /settings -->", readme, re.S)
    assert shown, f"README has no <!-- settings: {marker} --> table"
    assert shown.group(1) == settings.markdown(table), \
        f"README's {marker} settings differ from the table; paste:\n{settings.markdown(table)}"


def test_every_setting_parses_its_own_default_back() -> None:
    for table in (Config, OperatorSettings):
        defaults = table()
        written = settings.environment(table, **{f: getattr(defaults, f) for f in vars(defaults)})
        assert settings.from_env(table, written) == defaults


@pytest.mark.parametrize(("command", "table"), [("operator", OperatorSettings), ("gateway", Config)])
def test_help_lists_every_setting_with_its_default(command: str, table: type) -> None:
    shown = subprocess.run([str(VENV_BIN / "nmcp"), command, "--help"], capture_output=True, text=True,
                           check=True).stdout
    for env, default, _meaning in settings.rows(table):
        assert f"{env} [{default.strip('()')}]" in shown, f"nmcp {command} --help does not show {env}"


def vocabulary_strings(tree: ast.Module, words: frozenset[str]) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words:
            yield node.lineno, node.value


def test_phases_and_reasons_are_typed_only_in_the_vocabulary() -> None:
    words = vocabulary.words()
    found = [f"{path}:{line}: {word!r}" for path, tree in sources() if path != VOCABULARY
             for line, word in vocabulary_strings(tree, words)]
    assert not found, "use the constants of nmcp/model/vocabulary.py:\n" + "\n".join(found)


def test_the_vocabulary_check_sees_a_typed_reason() -> None:
    tree = ast.parse('phase = "Ready"\nreason = Reason.IDLE_TIMEOUT\nlog("Ready now")\nraise E(reason="PoolFull")\n')
    assert [line for line, _ in vocabulary_strings(tree, vocabulary.words())] == [1, 4]
