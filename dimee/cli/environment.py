"""DIMEE_* variables that dimee does not read: a mistyped name would be ignored in silence, so a command says so
once, as it starts."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

import typer
from typer.core import TyperCommand, TyperGroup

from dimee.streaming.config import Settings

PREFIX: str = Settings.model_config["env_prefix"]
TOOLING_PREFIX = f"{PREFIX}TEST_"
"""The test services' variables (`. .services/run/env` exports DIMEE_TEST_KAFKA, …): the tests read them, and
the README's walk has them in the shell where it runs dimee."""


# Read by the repository's scripts, not by dimee (deploy/local-services.sh, install-helm.sh, compose.yaml, the
# chart tests): exported in a shell that also runs dimee, they are no typo. tests/cli/test_usability.py keeps this
# list in step with the scripts.
TOOLING_VARIABLES = frozenset({
    "DIMEE_ARTIFACTS", "DIMEE_HELM", "DIMEE_KAFKA_JAVA_OPTS", "DIMEE_KAFKA_PORT",
    "DIMEE_KAFKA_REPLICA_FETCH_WAIT_MS", "DIMEE_MAVEN_REPO", "DIMEE_REDIS_PORT", "DIMEE_SERVICES_DIR",
    "DIMEE_ZK_PORT",
})


def _commands(command: TyperCommand | TyperGroup) -> Iterator[TyperCommand | TyperGroup]:
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


def known_variables(root: TyperCommand | TyperGroup) -> set[str]:
    """Every variable dimee reads: a Settings field's (DIMEE_<FIELD>) and any option's own envvar."""
    known = {f"{PREFIX}{field}".upper() for field in Settings.model_fields}
    for command in _commands(root):
        for param in command.params:
            envvar = param.envvar
            known.update([envvar] if isinstance(envvar, str) else envvar or [])
    return known


def unknown_variables(environ: Mapping[str, str], known: set[str]) -> list[str]:
    """The DIMEE_* names in `environ` that dimee reads nowhere (Settings reads them whatever their case)."""
    return sorted(name for name in environ if name.upper().startswith(PREFIX)
                  and name.upper() not in known | TOOLING_VARIABLES and not name.upper().startswith(TOOLING_PREFIX))


def warn_unknown(environ: Mapping[str, str], root: TyperCommand | TyperGroup) -> None:
    """One line on stderr per unknown DIMEE_* variable, with the known name closest to it."""
    known = known_variables(root)
    for name in unknown_variables(environ, known):
        # compared without the prefix, which every name shares and would make any two look alike
        close = difflib.get_close_matches(name.upper().removeprefix(PREFIX),
                                          sorted(k.removeprefix(PREFIX) for k in known), n=1)
        hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
        typer.echo(f"warning: {name} is not a dimee setting and is ignored{hint}", err=True)


def without_unknown(environ: Mapping[str, str], root: TyperCommand | TyperGroup) -> dict[str, str]:
    """`environ` less its unknown DIMEE_* variables: what `up` hands its roles, which would warn again."""
    unknown = set(unknown_variables(environ, known_variables(root)))
    return {name: value for name, value in environ.items() if name not in unknown}
