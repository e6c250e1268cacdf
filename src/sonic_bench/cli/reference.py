"""The command reference, written from the argparse parsers themselves (every command of
`sonic-bench` and the Locust file's options), so that the documentation cannot drift from
the code: the docs site builds its reference page from `command_reference()`."""

from __future__ import annotations

import argparse

from sonic_bench.cli import build_parser
from sonic_bench.loadgen.options import help_parser


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    value = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
    return ", ".join(f"`{flag}{value}`" for flag in action.option_strings)


def _help(action: argparse.Action, prog: str) -> str:
    raw = action.help or ""
    try:  # as argparse itself expands a help text: %(default)s, %(default)g, %%
        text = raw % {**vars(action), "prog": prog}
    except (KeyError, TypeError, ValueError):
        text = raw
    if action.choices and "choices" not in raw:
        text += f" (one of: {', '.join(map(str, action.choices))})"
    shown = action.default not in (None, False, [], "", argparse.SUPPRESS)
    if shown and action.nargs != 0 and "%(default)" not in raw:
        text += f" (default: `{action.default}`)"
    return " ".join(text.replace("|", "\\|").split())


def _parser_section(parser: argparse.ArgumentParser, title: str) -> list[str]:
    lines = [f"## `{title}`", ""]
    if parser.description:
        lines += [parser.description, ""]
    for group in parser._action_groups:  # argparse's groups, in the order they were made
        actions = [
            a for a in group._group_actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
        ]  # fmt: skip
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| option | what it does |", "|---|---|"]
        lines += [f"| {_flags(a)} | {_help(a, parser.prog)} |" for a in actions]
        lines.append("")
    return lines


def _commands(parser: argparse.ArgumentParser):
    """Every (name, parser) of the command tree, sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                sub.description = sub.description or helps.get(name)
                nested = list(_commands(sub))
                yield (name, sub) if not nested else (name, None)
                yield from ((f"{name} {n}", p) for n, p in nested)


def command_reference() -> str:
    lines = [
        "# Command reference",
        "",
        "Generated from the command-line parsers when the documentation is built.",
        "",
    ]
    for name, parser in _commands(build_parser()):
        if parser is not None:
            lines += _parser_section(parser, f"sonic-bench {name}")
    lines += _parser_section(help_parser(), "locust -f loadgen/sonic.py")
    lines += [
        "Locust's own options (`-u`, `-r`, `-t`, `--headless`, `--processes`, `--master`, "
        "`--worker`, `--csv`, `--html`, ...) work as Locust documents them.",
        "",
    ]
    return "\n".join(lines)


def every_flag() -> set[str]:
    """Every option string of every parser the reference covers."""
    flags = set()
    parsers = [p for _, p in _commands(build_parser()) if p is not None] + [help_parser()]
    for parser in parsers:
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                flags.update(action.option_strings)
    return flags
