"""The CLI glue: the demo runs end to end; errors are one line with exit status 1."""

from __future__ import annotations

from click.testing import CliRunner
from vecstore.cli.main import main

import vecstore


def test_demo_runs_end_to_end(tmp_path):
    path = tmp_path / "demo-store"
    result = CliRunner().invoke(main, ["demo", str(path), "--items", "3000", "--users", "500", "--requests", "30", "-k", "100"])
    assert result.exit_code == 0, result.output
    assert "put 3,000 items" in result.output
    assert "no false negatives: True" in result.output
    assert "verify: ok" in result.output
    with vecstore.open(path, readonly=True) as s:
        t = s.table("items")
        assert len(t) == 2900  # the demo deletes 100
        assert t.get("item-42").found[0]
    # Running it again replaces the previous demo store.
    assert CliRunner().invoke(main, ["demo", str(path), "--items", "1000", "--users", "100", "--requests", "10", "-k", "50"]).exit_code == 0


def test_demo_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "mine"), "--items", "1000"])
    assert result.exit_code == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_errors_are_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(main, ["info", str(tmp_path / "missing.vs")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no store at")
    assert len(result.output.strip().splitlines()) == 1
    usage = CliRunner().invoke(main, ["info"])
    assert usage.exit_code == 2
