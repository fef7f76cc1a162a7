"""Every command that README.md and docs/*.md quote parses with the real command line (issue 31, item 6).

Nothing runs. The typer app's command tree (`typer.main.get_command`) is walked to the subcommand, and that
command's own option parser reads the rest, so a renamed command, a removed option or a misspelt flag fails
here rather than in a reader's shell. Values are not checked (placeholders such as `FILE`, `<path>` or
`cuda:N` stand in for them).

What is checked:
- Each line of a fenced block whose info string is a shell (none, bash, sh, shell, console; a `$ ` prompt is
  dropped), with lines that end in `\\` joined to the next. These are meant to run as written, so their
  required arguments and options must be there. An option's environment variable set before the command
  (`DIMEE_X=1 dimee ...`) counts as the option.
- Each inline `code` span outside fences. These name a command in passing (`dimee seed --only-missing`), so
  only the command path, the option names and the count of arguments are checked, and the last option may
  go without its value (`dimee calibrate --max-drop`).
- Within either, a command begins a shell command: after `VAR=value` prefixes, or after the `--` of a wrapper
  such as `bash deploy/local-services.sh run --`. It ends at `|`, `||`, `&&`, `;`, `&`, a redirection or a
  comment. It is `dimee` (or a path ending in bin/dimee, such as .venv/bin/dimee) or `python -m dimee`.
  `python -m MODULE` is checked only as far as that the module exists and can run (a package needs a
  `__main__`), and `python FILE.py` as far as that the file exists.
- `[` and `]` around an optional part are dropped. A `…` or `...` token stands for elided arguments and makes
  the command incomplete, so only its names are checked.

What is skipped: a fenced block whose info string is not a shell. Output and wrong-usage examples go in a
```text block for that reason, and so do ```python and ```yaml blocks. Indented code blocks are not read.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from dimee.cli import app

ROOT = Path(__file__).resolve().parents[2]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
SEPARATORS = {"|", "||", "&&", ";", "&", ";;", "(", ")"}
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"python[0-9.]*")
ELISIONS = {"…", "..."}


@dataclass(frozen=True)
class Snippet:
    """Shell text quoted in a page: a fenced line (complete, meant to run) or an inline span (a mention)."""

    where: str  # page:line
    text: str
    complete: bool


@dataclass(frozen=True)
class Command:
    """One command found in a snippet: its tokens from the program on, and the variables set before it."""

    where: str
    tokens: tuple[str, ...]
    env: frozenset[str]
    complete: bool

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def snippets(markdown: str, page: str) -> list[Snippet]:
    """The shell lines of the page's fenced shell blocks, and its inline code spans."""
    found: list[Snippet] = []
    prose: list[str] = []  # the page with every fenced line blanked, so spans keep their line numbers
    fence: str | None = None  # the open fence's marker
    shell = False
    pending, pending_at = "", 0
    for number, line in enumerate(markdown.splitlines(), 1):
        stripped = line.strip()
        marker = re.match(r"(`{3,}|~{3,})\s*([^\s`]*)", stripped)
        if fence is None and marker:
            fence, shell = marker.group(1), marker.group(2).lower() in SHELL_FENCES
            prose.append("")
            continue
        if fence is not None:
            prose.append("")
            if stripped.startswith(fence) and not stripped[len(fence):].strip():
                fence = None
            elif shell:
                text = stripped.removeprefix("$ ") if stripped.startswith("$ ") else stripped
                pending_at = pending_at or number
                if text.endswith("\\"):
                    pending += text[:-1].rstrip() + " "
                    continue
                found.append(Snippet(f"{page}:{pending_at}", pending + text, complete=True))
                pending, pending_at = "", 0
            continue
        prose.append(line)
    found += _spans(prose, page)
    return found


def _spans(lines: list[str], page: str) -> list[Snippet]:
    """Inline code spans, paired within a paragraph as Markdown pairs them (one may run over a line break)."""
    spans: list[Snippet] = []
    start = 0
    for number, line in enumerate([*lines, ""], 1):
        if line.strip():
            start = start or number
            continue
        if start:
            paragraph = "\n".join(lines[start - 1:number - 1])
            for match in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", paragraph, re.S):
                at = start + paragraph.count("\n", 0, match.start())
                spans.append(Snippet(f"{page}:{at}", " ".join(match.group(2).split()), complete=False))
        start = 0
    return spans


def commands(snippet: Snippet) -> list[Command]:
    """The commands of the snippet that run dimee or a Python module or file."""
    text = re.sub(r"<([\w.-]+)>", lambda m: m.group(1).upper(), snippet.text)  # `<path>` is a placeholder
    text = re.sub(r"(?<!\S)\d+(?=[<>])", " ", text)  # a file descriptor before a redirection: `2>`
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: prose, not a command
        return []
    found: list[Command] = []
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in SEPARATORS and not set(token) <= set("<>&"):
            segment.append(token)
            continue
        if segment:
            command = _command(segment, snippet)
            if command is not None:
                found.append(command)
        segment = [] if token in SEPARATORS else [">"]  # a redirection ends the command: the rest is ignored
    return found


def _command(segment: list[str], snippet: Snippet) -> Command | None:
    if segment[0] == ">":  # what follows a redirection
        return None
    start = 0
    if "--" in segment and not _runs(segment[_after_env(segment, 0)]):  # a wrapper: `... run -- dimee ...`
        start = segment.index("--") + 1
    start = _after_env(segment, start)
    if start >= len(segment) or not _runs(segment[start]):
        return None
    env = frozenset(token.split("=", 1)[0] for token in segment[:start] if ENV_ASSIGNMENT.match(token))
    complete = snippet.complete and not ELISIONS & set(segment)
    tokens = [token.removeprefix("[").removesuffix("]") for token in segment[start:] if token not in ELISIONS]
    return Command(snippet.where, tuple(token for token in tokens if token), env, complete)


def _after_env(segment: list[str], start: int) -> int:
    while start < len(segment) and ENV_ASSIGNMENT.match(segment[start]):
        start += 1
    return min(start, len(segment) - 1)


def _runs(token: str) -> bool:
    program = token.rsplit("/", 1)[-1]
    return token == "dimee" or token.endswith("bin/dimee") or bool(PYTHON.fullmatch(program))


def problem(command: Command) -> str | None:
    """What keeps the command from parsing (None: it parses)."""
    program, *args = command.tokens
    if PYTHON.fullmatch(program.rsplit("/", 1)[-1]):
        if args[:1] == ["-m"] and len(args) > 1:
            if args[1] != "dimee":
                return _module_problem(args[1])
            args = args[2:]  # `python -m dimee` runs the command line
            if (failure := _module_problem("dimee")) is not None:
                return failure
        elif args and args[0].endswith(".py"):
            return None if (ROOT / args[0]).is_file() else f"no file {args[0]}"
        else:
            return None  # python with a flag or code: not a command of ours
    failure = _cli_problem(args, command.env, command.complete)
    if failure and not command.complete and args and args[-1].startswith("-"):
        # A mention may name an option without its value: `dimee calibrate --max-drop`.
        return failure if _cli_problem([*args, "VALUE"], command.env, complete=False) else None
    return failure


def _module_problem(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except ImportError:
        spec = None
    if spec is None:
        return f"no module {module}"
    if spec.submodule_search_locations is not None and importlib.util.find_spec(f"{module}.__main__") is None:
        return f"{module} is a package without __main__: python -m cannot run it"
    return None


def _cli_problem(args: list[str], env: frozenset[str], complete: bool) -> str | None:
    """Walk the command tree to the subcommand, then let its own parser read the options and arguments."""
    command, path, parent = typer.main.get_command(app), ["dimee"], None
    while True:
        # Not resilient: a resilient parse drops unknown options silently. Parsing alone invokes no callback.
        context = command.context_class(command, info_name=path[-1], parent=parent)
        try:
            opts, rest, _ = command.make_parser(context).parse_args(args=list(args))
        except Exception as exc:  # the parser's usage errors: no such option, an option without its value
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            return f"{' '.join(path)}: {message}"
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            break
        if not rest:
            return None  # a group named alone, or with --help
        sub = command.get_command(context, rest[0])
        if sub is None:
            return f"{' '.join(path)} has no command {rest[0]!r} (it has {', '.join(sorted(subcommands))})"
        command, path, parent, args = sub, [*path, rest[0]], context, rest[1:]
    if rest and not context.allow_extra_args:
        return f"{' '.join(path)}: unexpected extra argument(s) {' '.join(rest)}"
    if not complete or opts.get("help"):
        return None
    missing = [param for param in command.params if param.required and opts.get(param.name) in (None, (), [])
               and not (isinstance(param.envvar, str) and param.envvar in env)]
    if missing:
        names = ", ".join("/".join(param.opts) if param.param_type_name == "option" else param.name.upper()
                          for param in missing)
        return f"{' '.join(path)}: missing {names}"
    return None


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def quoted() -> list[Command]:
    found: list[Command] = []
    for page in pages():
        for snippet in snippets(page.read_text(encoding="utf-8"), page.relative_to(ROOT).as_posix()):
            found += commands(snippet)
    return found


QUOTED = quoted()


def test_the_docs_quote_commands():
    """The extractor finds what the pages quote: a test that checks nothing would pass as well."""
    programs = {command.tokens[0] for command in QUOTED}
    assert sum(command.complete for command in QUOTED) > 20
    assert "dimee" in programs and any(PYTHON.fullmatch(program.rsplit("/", 1)[-1]) for program in programs)


@pytest.mark.parametrize("command", QUOTED, ids=lambda c: f"{c.where} {c.text}"[:120])
def test_a_quoted_command_parses(command: Command):
    assert problem(command) is None, f"{command.where}: `{command.text}`: {problem(command)}"


# The checker on samples: it must catch what it is for, and let through what is fine.

def _check(text: str, complete: bool = True) -> list[str | None]:
    return [problem(c) for c in commands(Snippet("sample.md:1", text, complete))]


def test_a_made_up_option_or_command_fails():
    assert "--made-up" in _check("dimee train --workdir w --made-up 3")[0]
    assert "no command 'trian'" in _check("dimee trian --workdir w")[0]
    assert "no command 'fech'" in _check("dimee data fech rt-sentences")[0]
    assert "--workdir" in _check("dimee train --workdir")[0]  # an option that takes a value, without one
    assert _check("dimee train --workdir", complete=False) == [None]  # a mention names the option
    assert "--made-up" in _check("dimee train --made-up", complete=False)[0]
    assert "extra argument" in _check("dimee seed --only-missing now", complete=False)[0]
    assert "extra argument" in _check("dimee data fetch rt-sentences bbc-news")[0]
    assert "--made-up" in _check("dimee seed --made-up", complete=False)[0]


def test_a_complete_command_needs_its_required_arguments_but_a_mention_does_not():
    assert "missing NAME" in _check("dimee data fetch")[0]
    assert _check("dimee data fetch", complete=False) == [None]
    assert _check("dimee data fetch --help") == [None]


def test_shell_around_a_command_is_read_as_the_shell_reads_it():
    assert _check("DIMEE_X=1 .venv/bin/dimee data fetch NAME 2>&1 | tee log && dimee --version; ls") == [None, None]
    assert _check("bash deploy/local-services.sh run -- dimee data fetch <name> > out.txt &") == [None]
    assert _check("dimee data fetch rt-sentences   # or bbc-news") == [None]
    assert _check("dimee up … --made-up 8050")[0] is not None
    assert _check("dimee data fetch …") == [None]  # elided: only the names are checked
    assert _check("dimee data [--help]") == [None]
    assert _check("helm install dimee deploy/helm/dimee -f plan.yaml; make faults") == []
    assert _check("deploy/helm/dimee") == []  # a folder named dimee is not the program


def test_python_commands_check_the_module_or_file():
    assert _check("python -m benchmarks.faults --scenarios a") == [None]
    assert "no module benchmarks.made_up" in _check(".venv/bin/python -m benchmarks.made_up")[0]
    assert "no file benchmarks/made_up.py" in _check("python benchmarks/made_up.py --json x")[0]
    assert "without __main__" in _check("python -m dimee data fetch NAME")[0]


def test_fenced_lines_are_complete_spans_are_mentions_and_output_is_skipped():
    page = "\n".join([
        "Run `dimee data fetch` first:", "", "```bash", "dimee data fetch \\", "  rt-sentences", "```", "",
        "```text", "dimee data fetch --made-up", "```", "", "Then `dimee", "train --workdir W`."])
    found = [(s.where, s.text, s.complete) for s in snippets(page, "p.md")]
    assert found == [("p.md:4", "dimee data fetch rt-sentences", True), ("p.md:1", "dimee data fetch", False),
                     ("p.md:12", "dimee train --workdir W", False)]
