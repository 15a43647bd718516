"""`foveal COMMAND --help` at a glance: one line an option, in two columns, panel by panel.

Typer's own layout gives each option five columns (name, short name, --no- form, type, help), so a
panel with one long flag or one switch leaves its help texts ~20 characters to wrap in. Here a
switch is written --[no-]flip, the value after the name (--epochs INT), and a name column at most
NAME_WIDTH wide leaves the rest of the line to the help: its one-line summary, the whole text of
every option being in docs/options.md (cli/reference.py writes it).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Column, Table
from rich.text import Text
from typer.core import TyperCommand

# Typer's parameters are Click's, or (Typer >= 0.16) those of its own copy of Click: told apart by
# their param_type_name, "argument" or "option".
Context = Parameter = Any

NAME_WIDTH = 24  # a value after a name wraps under it; a longer name has its help on the next line
REFERENCE = "Every option in full: docs/options.md"  # the epilog of every command's help
TYPE_NAMES = {"integer": "INT", "float": "FLOAT", "text": "TEXT", "boolean": "BOOL", "path": "PATH"}
PYTHON_TYPE_NAMES = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL"}


class ShortHelp(TyperCommand):
    """A Typer command whose --help is short (see the module's docstring)."""

    def format_help(self, ctx: Context, formatter: Any) -> None:
        console = Console(highlight=False)  # as wide as the terminal (or $COLUMNS), as Typer's
        console.print(Padding(Text(f"Usage: {usage(self, ctx)}"), 1))
        if self.help:
            console.print(Padding(Text(_paragraphs(self.help)), (0, 1, 1, 1)))
        rows = {title: [(names(p, ctx), line(p, ctx)) for p in params] for title, params in panels(self, ctx)}
        width = min(NAME_WIDTH, max(len(name) for panel in rows.values() for name, _ in panel))
        for title, panel in rows.items():
            console.print(Panel(_rows(panel, width), title=title, title_align="left", border_style="dim"))
        console.print(Padding(Text(self.epilog or REFERENCE, style="dim"), (0, 1)))


def _rows(rows: list[tuple[str, str]], width: int) -> Group:
    """Name and help side by side; a name longer than `width` on a line of its own, its help below."""
    lines: list[Text | Table] = []
    table = None
    for name, text in rows:
        if len(name.split(" ")[0]) > width:  # --checkpoint-every-minutes
            lines.append(Text(name, style="bold cyan"))
            name, table = "", None
        if table is None:
            table = Table.grid(Column(width=width), Column(ratio=1), padding=(0, 1, 0, 0), expand=True)
            lines.append(table)
        table.add_row(Text(name, style="bold cyan"), Text(text))
    return Group(*lines)


def usage(command: TyperCommand, ctx: Context) -> str:
    """foveal train [OPTIONS] [DATA]: the arguments as --help lists them, optional ones in brackets."""
    arguments = [p for p in command.get_params(ctx) if _is_argument(p)]
    written = [names(p, ctx) if p.required else f"[{names(p, ctx)}]" for p in arguments]
    return " ".join([ctx.command_path, "[OPTIONS]", *written])


def panels(command: TyperCommand, ctx: Context) -> Iterator[tuple[str, list[Parameter]]]:
    """The command's visible parameters by panel, in Typer's order: the arguments, the options
    without a panel ("Options"), then each named panel as its first option comes."""
    grouped: dict[str, list[Parameter]] = {"Arguments": [], "Options": []}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        default = "Arguments" if _is_argument(param) else "Options"
        grouped.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(param)
    yield from ((title, params) for title, params in grouped.items() if params)


def names(param: Parameter, ctx: Context) -> str:
    """How the parameter is written: DATA, IMAGES..., --epochs INT, --[no-]hflip, --quiet, -q."""
    if _is_argument(param):
        return param.name.upper() + ("..." if param.nargs != 1 else "")
    flags = sorted(param.opts, key=lambda opt: not opt.startswith("--"))  # --quiet, -q
    if len(param.secondary_opts) == 1 and param.secondary_opts[0] == "--no-" + flags[0][2:]:
        flags[0] = "--[no-]" + flags[0][2:]
    elif param.secondary_opts:
        flags[0] += "/" + ",".join(param.secondary_opts)
    written = ", ".join(flags)
    return written if param.is_flag else f"{written} {value_name(param, ctx)}"


def value_name(param: Parameter, ctx: Context) -> str:
    """The option's metavar, else its type: INT, FLOAT, TEXT."""
    if param.metavar:
        return param.metavar
    if hasattr(param, "type"):  # Click's: its type's name, "integer"
        return TYPE_NAMES.get(param.type.name, param.type.name.upper())
    annotation = param.type_descriptor.annotation  # Typer's own Click: the Python type, int
    annotation = (typing.get_args(annotation) or (annotation,))[0]  # list[str] -> str
    return PYTHON_TYPE_NAMES.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


def line(param: Parameter, ctx: Context) -> str:
    """The one-line help, with the default where Typer would show one."""
    text = (getattr(param, "help", None) or "").split("\n\n")[0]  # the rest: docs/options.md
    shown = shown_default(param, ctx)
    return with_default(text, shown).strip()


def with_default(text: str, shown: str | None) -> str:
    """`text` with its default inside its full stop, as the hand-written ones say it:
    "Passes over the training images [default: 20]." (None: `text` as it is)."""
    if shown is None:
        return text
    body, stop = (text[:-1], ".") if text.endswith(".") else (text, "")
    return f"{body} [default: {shown}]{stop}"


def shown_default(param: Parameter, ctx: Context) -> str | None:
    """The default as --help says it (None: not said): on/off for a --[no-] pair, nothing for a
    switch, an argument, an option without a default or one whose help says its default itself."""
    default: Any = param.get_default(ctx, call=False)
    if _is_argument(param) or not param.show_default or default in (None, (), []):
        return None
    if param.is_flag:
        return ("on" if default else "off") if param.secondary_opts else None
    return str(default)


def _paragraphs(text: str) -> str:
    """A docstring's paragraphs, each on one line (the terminal wraps it)."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


def _is_argument(param: Parameter) -> bool:
    return param.param_type_name == "argument"
