"""README.md's generated tables: the `chime` commands (from the argument parser, so they match `chime --help`) and
every setting (from :class:`~shared.settings.Settings`). `chime docs` rewrites them; a test fails when they are
stale."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pydantic import SecretStr

from shared.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"

_SECTION = re.compile(r"(<!-- generated: (?P<name>[a-z]+) -->\n).*?(<!-- end generated -->)", re.S)


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, help) of each subcommand, in the order they were added."""
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subparsers nowhere public
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}  # noqa: SLF001
            return [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return []


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().removeprefix("usage: ").strip()
    return " ".join(usage.split()).replace("[-h] ", "").replace(" [-h]", "")


def commands_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| command | does |", "|---|---|"]
    for _name, sub, help_text in subcommands(parser):
        nested = subcommands(sub)
        for _child, child, child_help in nested or [("", sub, help_text)]:
            rows.append(f"| `{_usage(child)}` | {child_help} |")
    rows.append("| `chime --version` | print the version |")
    return "\n".join(rows)


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        return "development placeholder (refused in prod)"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if hasattr(value, "value"):
        value = value.value
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `CHIME_{name.upper()}` | {_default(field.default)} | {field.description} |")
    return "\n".join(rows)


def render(readme: str, parser: argparse.ArgumentParser) -> str:
    """``readme`` with each generated section replaced by its current content."""
    tables = {"commands": commands_table(parser), "settings": settings_table()}

    def fill(match: re.Match[str]) -> str:
        return f"{match.group(1)}{tables[match.group('name')]}\n{match.group(3)}"

    return _SECTION.sub(fill, readme)
