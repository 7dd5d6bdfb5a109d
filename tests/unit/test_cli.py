"""The `chime` command line: help never acts, and every documented form parses to what it says."""

from __future__ import annotations

import pytest

from services.cli import build_parser, cmd_stack


@pytest.mark.parametrize("argv", [["stack", "down", "--help"], ["stack", "exec", "--help"], ["stack", "--help"]])
def test_help_prints_usage_and_exits_without_acting(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: chime stack")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("chime ")


def test_stack_forms() -> None:
    parser = build_parser()
    up = parser.parse_args(["stack", "up", "--kafka-only"])
    assert (up.action, up.kafka_only, up.func) == ("up", True, cmd_stack)
    down = parser.parse_args(["stack", "down"])
    assert down.action == "down"
    run = parser.parse_args(["stack", "exec", "--", "pytest", "-x", "--lf"])
    assert run.action == "exec"
    assert [c for c in run.command if c != "--"] == ["pytest", "-x", "--lf"]
