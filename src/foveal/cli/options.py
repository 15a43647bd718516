"""The training options of `foveal train` and `foveal compare`, generated from TrainConfig's fields.

Each option's name, type, choices, help text and shown default come from the field (config.py), so
the command line and the library can never disagree. Every option defaults to None, "not given",
so that an option left out keeps the value of a --config file, and only then the field's default.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape

from foveal.config import PANELS, ConfigField, config_fields


def option_flag(f: ConfigField) -> str:
    """The option's name on the command line, e.g. --batch-size."""
    return f.field.metadata.get("flag", "--" + f.flat.replace("_", "-"))


def with_training_options(*, exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator: add one keyword parameter per TrainConfig field (by flat name, except `exclude`)
    to a Typer command, after its own parameters. The command receives them in `**options`."""

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        hints = typing.get_type_hints(command, include_extras=True)  # the command's own, evaluated
        own = [
            p.replace(annotation=hints[p.name])
            for p in signature.parameters.values()
            if p.kind != inspect.Parameter.VAR_KEYWORD
        ]
        # The command's arguments first, then the settings panel by panel, then its own options
        # (keyword-only, so the signature stays valid), which join the last panel (Run).
        arguments = [p for p in own if _is_argument(p)]
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if not _is_argument(p)]
        parameters = arguments + [_parameter(f) for f in config_fields() if f.flat not in exclude] + rest
        command.__signature__ = signature.replace(parameters=parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The training options the user gave (those not None), by flat name."""
    flat = {f.flat for f in config_fields()}
    return {k: v for k, v in options.items() if k in flat and v is not None}


def _parameter(f: ConfigField) -> inspect.Parameter:
    base = _without_none(f.type)
    settings: dict[str, Any] = {"rich_help_panel": PANELS[f.group], "show_default": False}
    flag = option_flag(f)
    shown = ("on" if f.default else "off") if isinstance(f.default, bool) else f.default
    # The default goes into the help text (escaped: Rich would read "[...]" as markup).
    settings["help"] = escape(f.help if shown is None else f"{f.help} [default: {shown}]")
    if f.field.metadata.get("parse") == "duration":
        base = str
    if typing.get_origin(base) is Literal:  # text, checked by the config: one clear line for a typo
        settings["metavar"] = "|".join(str(v) for v in typing.get_args(base))
        base = str
    decls = [f"{flag}/--no-{flag[2:]}"] if base is bool else [flag]
    if "metavar" in f.field.metadata:
        settings["metavar"] = f.field.metadata["metavar"]
    annotation = Annotated[typing.Optional[base], typer.Option(*decls, **settings)]  # noqa: UP045
    return inspect.Parameter(f.flat, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _is_argument(parameter: inspect.Parameter) -> bool:
    """Whether a Typer parameter is a positional argument (typer.Argument in its annotation)."""
    metadata = getattr(parameter.annotation, "__metadata__", ())
    return any(type(m).__name__ == "ArgumentInfo" for m in metadata)


def _without_none(annotation: Any) -> Any:
    """int | None -> int; other annotations as they are."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return annotation
