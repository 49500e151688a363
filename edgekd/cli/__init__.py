"""The ``edgekd`` command line: one typer sub-app per pipeline stage, each a thin layer over :mod:`edgekd.api`.

Errors are translated in one place (:func:`main`): an :class:`~edgekd.errors.EdgekdError` becomes one
stderr line and its exit code; a usage error (mistyped command or option) prints the usage and the error
and exits 2; nothing else is caught, so real bugs still show their traceback.
"""

from __future__ import annotations

import sys

import typer

from edgekd.errors import EdgekdError

app = typer.Typer(
    name="edgekd",
    help="Learn compact CNNs by distillation, compile them with TVM, measure them on edge boards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Explicit registration (no import side effects): each module exposes `register(app)`.
    from edgekd.cli import (
        compile_cmd,
        compress_cmd,
        device_cmd,
        latency_cmd,
        recipes_cmd,
        report_cmd,
        results_cmd,
        train_cmd,
        tune_cmd,
    )

    for module in (recipes_cmd, train_cmd, compress_cmd, compile_cmd, device_cmd, latency_cmd, tune_cmd,
                   results_cmd, report_cmd):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    try:
        result = app(args=argv, prog_name="edgekd", standalone_mode=False)
    except EdgekdError as err:
        print(f"edgekd: error: {err}", file=sys.stderr)
        return err.exit_code
    except typer.Exit as exit_:
        return exit_.exit_code
    except KeyboardInterrupt:
        print("edgekd: interrupted", file=sys.stderr)
        return 130
    except typer.Abort:  # e.g. end of input at a prompt
        print("edgekd: aborted", file=sys.stderr)
        return 1
    except typer.TyperException as err:
        # Usage errors (unknown command or option, bad value): typer's own (vendored click) exceptions,
        # which print the usage line, a hint and the error; exit code 2.
        show = getattr(err, "show", None)
        if getattr(err, "ctx", False) is None:  # typer raises a few (e.g. a missing option value) without context
            print(f"Usage: {app.info.name} [OPTIONS] COMMAND [ARGS]...\n"
                  f"Try '{app.info.name} --help' or '{app.info.name} COMMAND --help' for help.\n", file=sys.stderr)
        if callable(show):
            show()
        else:
            print(f"edgekd: error: {err.format_message()}", file=sys.stderr)
        return err.exit_code
    # Non-standalone mode returns the exit code of `--help` and similar early exits instead of raising.
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
