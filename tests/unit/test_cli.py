"""The `chime` command line: help never acts, every command and flag says what it does, errors are one line, and the
README's tables are what the parser and the settings say."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import build_parser, cmd_stack
from services.readme_tables import README, render, subcommands


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, e.g. ("stack", "down")."""
    found: list[tuple[str, ...]] = []
    for name, sub, _ in subcommands(parser):
        found.append((*prefix, name))
        found.extend(_commands(sub, (*prefix, name)))
    return found


def _parser_of(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        parser = next(sub for child, sub, _ in subcommands(parser) if child == name)
    return parser


COMMANDS = _commands(build_parser())


def _stack_processes() -> set[str]:
    """Kafka brokers and Postgres servers running on this machine (pid and command line)."""
    found: set[str] = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended while we looked
        if "kafka.Kafka" in args or "postgres -D" in args:
            found.add(f"{cmdline.parent.name} {args}")
    return found


def test_every_command_is_listed() -> None:
    names = {path[0] for path in COMMANDS}
    assert {"api", "planner", "executor", "recorder", "dlq", "stack", "replay", "health", "docs"} <= names
    assert {("stack", "up"), ("stack", "down"), ("stack", "exec")} <= set(COMMANDS)


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "chime")
def test_help_prints_usage_and_acts_on_nothing(path: tuple[str, ...], tmp_path: Path) -> None:
    before = _stack_processes()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *path, "--help"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: chime"), done.stdout
    assert list(tmp_path.iterdir()) == [], "help created local stack state"
    assert _stack_processes() == before, "help started or stopped the local stack"


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_and_flag_says_what_it_does(path: tuple[str, ...]) -> None:
    parser = _parser_of(path)
    assert parser.description, f"chime {' '.join(path)} has no description"
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            assert all(choice.help for choice in action._choices_actions)  # noqa: SLF001
        else:
            assert action.help, f"chime {' '.join(path)} {action.option_strings or action.dest} has no help"


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


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["replay", "topic", "runs.due", "--from-time", "yesterday"], {}, "Invalid isoformat"),
        (["token", "--tenant", "acme"], {"CHIME_ENV": "prod"}, "CHIME_JWT_SECRET must be set"),
        (["token", "--tenant", "acme"], {"CHIME_PARTITIONS": "zero"}, "CHIME_PARTITIONS"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(argv: list[str], env: dict[str, str], says: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"chime {argv[0]}: ") and says in lines[0], lines[0]


def test_readme_tables_are_current() -> None:
    assert README.read_text() == render(README.read_text(), build_parser()), (
        "README.md's generated tables are stale: run `chime docs` and commit it"
    )
