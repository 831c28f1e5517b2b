"""The Typer app every command module registers on, the exit codes, and the one error mapping.

Commands only parse options, build configs, call one tested function and map project errors to
exit codes:

    0    everything asked for was done
    1    usage or setup error (bad option, missing weights, unusable device, OUT not writable),
         or no input found
    2    the run went through but some inputs failed or conflict with existing outputs (each
         one reported)
    130  interrupted (Ctrl-C / SIGTERM); finished outputs are kept, a rerun resumes
    141  the pipe that stdout/stderr writes to was closed (`--json | head -1`): 128 + SIGPIPE,
         as a shell reports a command killed by it; stops quietly
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from linearsr_cli import __version__

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_PARTIAL = 2
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: finished files are kept, no partial file is left
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout/stderr went away


def _usage_error_types() -> tuple[type[Exception], ...]:
    """The UsageError of typer's vendored click (typer >= 0.20) and of click itself, if present."""
    types: list[type[Exception]] = []
    try:
        from typer._click.exceptions import UsageError as VendoredUsageError
    except ImportError:
        pass
    else:
        types.append(VendoredUsageError)
    try:
        from click import UsageError
    except ImportError:
        pass
    else:
        types.append(UsageError)
    return tuple(types)


_USAGE_ERRORS = _usage_error_types()


def _usage_error(exc: Exception) -> typer.Exit | None:
    """A usage error exits 1. On a terminal typer draws it in a rich panel (None: re-raise it);
    into a pipe or a file, where a panel would wrap the message at 80 columns, it is written
    here as plain lines, the message on one line: usage, the --help hint, `error: MESSAGE`."""
    exc.exit_code = EXIT_USAGE  # type: ignore[attr-defined]
    if type(exc).__name__ == "NoArgsIsHelpError" or sys.stderr.isatty():
        return None
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        typer.echo(ctx.get_usage(), err=True)
        if ctx.command.get_help_option(ctx) is not None:
            typer.echo(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.", err=True)
    message = exc.format_message()  # type: ignore[attr-defined]
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    return typer.Exit(EXIT_USAGE)


class _Group(TyperGroup):
    """Click exits 2 on a usage error; here 2 means "some inputs failed", so usage errors
    (unknown option, bad value, missing argument) exit 1 instead, reported by _usage_error."""

    def make_context(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(*args, **kwargs)
        except _USAGE_ERRORS as exc:
            plain = _usage_error(exc)
            if plain is None:
                raise
            raise plain from None

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except _USAGE_ERRORS as exc:
            plain = _usage_error(exc)
            if plain is None:
                raise
            raise plain from None


ABLATIONS = "Ablations"  # help panel of switches that exist for docs/ablation/*.sh, not for users
MANY_MACHINES = "Many machines"  # help panel of the Ray / sharding options


class JsonFlagCommand(TyperCommand):
    """A command whose `--json` is a flag (JSON on stdout) and whose files go to `--json-out`:
    the old spelling `--json FILE` (or `--json=FILE`, `--json -`) is refused with that hint
    instead of a bare "unexpected extra argument"."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        for i, arg in enumerate(args):
            nxt = args[i + 1] if i + 1 < len(args) else ""
            old = arg.startswith("--json=") or (arg == "--json" and (nxt == "-" or nxt.lower().endswith(".json")))
            if old:
                target = arg.partition("=")[2] if "=" in arg else nxt
                hint = "give --json alone" if target == "-" else f"write the file with --json-out {target}"
                raise typer.BadParameter(
                    f"--json is a flag now (JSON on stdout, no value); {hint}", ctx=ctx, param_hint="'--json'"
                )
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="linearsr",
    cls=_Group,
    help="Batch image upscaler on a linear-attention diffusion super-resolution model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Batch image upscaler on a linear-attention diffusion super-resolution model."""


@app.command()
def version() -> None:
    """Print the LinearSR version."""
    print(__version__)


def fail(exc: Exception) -> typer.Exit:
    """Report a project error in one line on stderr (console.error: no traceback, never
    wrapped); the usage exit code."""
    from linearsr_cli.cli import console

    console.error(str(exc))
    return typer.Exit(EXIT_USAGE)


@contextlib.contextmanager
def project_errors() -> Iterator[None]:
    """A project error (LinearSRError) inside the block ends the command: one line on stderr,
    the usage exit code (cli/app.fail)."""
    from linearsr_cli.errors import LinearSRError

    try:
        yield
    except LinearSRError as exc:
        raise fail(exc) from None
