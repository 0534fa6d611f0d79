"""docs/cli-reference.md is generated from --help: it must be current, and every
command must have help text with an example."""

from __future__ import annotations

from pathlib import Path

import pytest
from vecstore.cli.reference import help_text, iter_commands, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli-reference.md"
COMMANDS = list(iter_commands())


def test_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == render(), "docs/cli-reference.md is stale: run `make docs-cli`"


def test_every_documented_command_is_in_the_reference():
    text = DOC.read_text(encoding="utf-8")
    names = [n for n, _ in COMMANDS]
    assert {"vecstore init", "vecstore import", "vecstore logs drift", "vecstore serve"} <= set(names)
    for name in names:
        assert f"## `{name}`" in text


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_with_an_example(name, cmd):
    assert cmd.help and len(cmd.help.strip()) > 20, f"{name} has no help text"
    text = help_text(name, cmd)
    assert "Example:" in text and "vecstore " in text.split("Example:", 1)[1], f"{name} --help has no example"
    for param in cmd.params:
        if param.param_type_name == "option" and not param.hidden:
            assert param.help, f"{name}: option {param.opts} has no help"
