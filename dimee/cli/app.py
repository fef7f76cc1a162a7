"""The `dimee` Typer application that every command module registers on."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def _type_or_choices(param: TyperOption | TyperArgument, ctx: typer.Context) -> str:
    """What --help shows after a parameter's name: no type tag (`<str>`, `<bool>`, `<path>`; its help text says
    what it takes), but an option's choices as click writes them ([a|b]), and an explicit metavar."""
    if isinstance(param, TyperOption) and param.metavar is not None:
        return param.metavar
    if param.type_descriptor.is_choice and not getattr(param, "is_flag", False):
        return "[" + param.display_type(ctx)[1:-1] + "]"  # typer's "<a|b>"
    return ""


_UNTAGGED: dict[type, type] = {}


def _untagged(param: object) -> object:
    """The parameter, its class swapped for a subclass that shows `_type_or_choices` (typer builds parameters
    itself and has no setting for the tag, so the commands below swap them as they hand them out)."""
    kind = type(param)
    if isinstance(param, TyperOption | TyperArgument) and kind not in _UNTAGGED.values():
        param.__class__ = _UNTAGGED.setdefault(kind, type(kind.__name__, (kind,), {
            "display_type_rich": _type_or_choices, "__module__": __name__}))
    return param


class Command(TyperCommand):
    def get_params(self, ctx: typer.Context) -> list:  # what --help lists, the help option included
        return [_untagged(p) for p in super().get_params(ctx)]


class Group(TyperGroup):
    def get_params(self, ctx: typer.Context) -> list:
        return [_untagged(p) for p in super().get_params(ctx)]


class App(typer.Typer):
    """A Typer app whose groups and commands show help without type tags."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cls=Group, **kwargs)  # type: ignore[arg-type]

    def command(self, *args: object, **kwargs: object):  # type: ignore[override]
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)  # type: ignore[arg-type]


app = App(
    help="dimee: classify text across mobile, edge and cloud tiers, routed before any layer runs.",
    no_args_is_help=True, pretty_exceptions_enable=False,  # add_completion: --install-completion, --show-completion
)
data_app = App(help="Fetch and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def package_version() -> str:
    try:
        return version("dimee")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dimee {package_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """dimee: classify text across mobile, edge and cloud tiers, routed before any layer runs."""
    import os

    from dimee.cli.environment import warn_unknown

    warn_unknown(os.environ, ctx.find_root().command)  # before any command runs: a mistyped name is not silent
