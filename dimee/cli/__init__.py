"""The `dimee` command line: one module per command group, all registered on `dimee.cli.app.app`. Every
command explains itself with --help; a user's mistake or a missing service prints one line, never a
traceback."""

from __future__ import annotations

import re
import sys

import typer

from dimee.cli import costs, dashboard, demo, offline, outputs, plan, research, stream  # noqa: F401 - they register the commands
from dimee.cli.app import app
from dimee.common.errors import USER_ERROR_EXIT, DimeeError

__all__ = ["app", "main"]


def usage_error_line(exc: Exception) -> str:
    """A bad option value as one line: `--objective must be one of 'reward', 'accuracy-budget', not 'best'`."""
    message = getattr(exc, "message", str(exc))
    if not message and hasattr(exc, "format_message"):  # a missing option carries no message of its own
        return " ".join(exc.format_message().split())  # one line, even where it lists the choices
    param = getattr(exc, "param", None)
    hint = "/".join(getattr(param, "opts", [])) if param is not None else ""
    choice = re.search(r"'(?P<value>.*)' is not one of (?P<choices>.*?)\.?$", message)
    if hint and choice:
        return f"{hint} must be one of {choice['choices']}, not '{choice['value']}'"
    return f"{hint}: {message}" if hint else message


def main() -> None:
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
    except DimeeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR_EXIT)
    except typer.BadParameter as exc:
        typer.echo(f"error: {usage_error_line(exc)}", err=True)
        sys.exit(USER_ERROR_EXIT)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):  # any other usage error
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(USER_ERROR_EXIT)
        raise
    sys.exit(code if isinstance(code, int) else 0)
