"""Command options generated from settings dataclasses: TrainConfig's fields for `foveal train` and
`foveal compare`, ServeSettings' for `foveal serve`, BenchSettings' and ExportSettings' for `foveal
bench` and `foveal export`.

Each option's name, type, choices, help text and shown default come from the field (declared with
config.option), so the command line and the library can never disagree. Every option defaults to
None, "not given", so that an option left out keeps the value of a --config file, and only then the
field's default.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from foveal.cli.help import with_default
from foveal.config import ConfigField, config_fields


def option_flag(f: ConfigField) -> str:
    """The option's name on the command line, e.g. --batch-size."""
    return f.field.metadata.get("flag", "--" + f.flat.replace("_", "-"))


def with_training_options(*, exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator: TrainConfig's fields (by flat name, except `exclude`) as options (see `with_options`)."""
    return with_options(config_fields(), exclude=exclude)


def with_options(
    fields: list[ConfigField], *, exclude: tuple[str, ...] = ()
) -> Callable[[Callable], Callable]:
    """Decorator: add one keyword parameter per field (by flat name, except `exclude`) to a Typer
    command, after its own parameters. The command receives them in `**options`; `given` picks out
    those the user gave. The fields are kept as the command's `option_fields` (cli/reference.py)."""
    chosen = [f for f in fields if f.flat not in exclude]

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
        parameters = arguments + [_parameter(f) for f in chosen] + rest
        command.__signature__ = signature.replace(parameters=parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.option_fields = {f.flat: f for f in chosen}  # type: ignore[attr-defined]
        return command

    return decorate


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The generated options the user gave (those not None), by flat name."""
    return {k: v for k, v in options.items() if v is not None}


def shown_default(f: ConfigField) -> str | None:
    """The field's default as --help and docs/options.md say it (None: none to say)."""
    if isinstance(f.default, bool):  # a switch with no --no- form says nothing
        return ("on" if f.default else "off") if f.field.metadata.get("negatable", True) else None
    return None if f.default in (None, ()) else str(f.default)


def _parameter(f: ConfigField) -> inspect.Parameter:
    base = without_none(f.type)
    metadata = f.field.metadata
    shown = shown_default(f)
    summary = with_default(f.summary, shown)
    settings: dict[str, Any] = {"rich_help_panel": f.panel, "show_default": False, "help": summary}
    flag = option_flag(f)
    if metadata.get("parse") == "duration":
        base = str
    if typing.get_origin(base) is Literal:  # text, checked by the settings: one clear line for a typo
        settings["metavar"] = "|".join(str(v) for v in typing.get_args(base))
        base = str
    if typing.get_origin(base) is tuple:  # tuple[str, ...]: the option given once per value
        base = list[typing.get_args(base)[0]]
    negatable = base is bool and metadata.get("negatable", True)
    decls = [f"{flag}/--no-{flag[2:]}"] if negatable else [flag]
    if "short" in metadata:
        decls.append(metadata["short"])
    if "metavar" in metadata:
        settings["metavar"] = metadata["metavar"]
    annotation = Annotated[typing.Optional[base], typer.Option(*decls, **settings)]  # noqa: UP045
    return inspect.Parameter(f.flat, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _is_argument(parameter: inspect.Parameter) -> bool:
    """Whether a Typer parameter is a positional argument (typer.Argument in its annotation)."""
    metadata = getattr(parameter.annotation, "__metadata__", ())
    return any(type(m).__name__ == "ArgumentInfo" for m in metadata)


def without_none(annotation: Any) -> Any:
    """int | None -> int; other annotations as they are."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return annotation
