"""The `sweep` command line. Exit codes: 0 success, 1 failure, 2 bad usage or bad input, 130
Ctrl-C (143 SIGTERM, 129 SIGHUP for `sweep run`)."""

from __future__ import annotations

import os
import sys

import click

from . import browse, check, run, ui

__all__ = ["entry", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="softsweep", message="%(prog)s (softsweep) %(version)s")
def main() -> None:
    """softsweep: hyperparameter sweeps and experiment tracking for softmax classifiers."""


for command in (
    run.run, run.worker, run.create, browse.runs, browse.studies, browse.report, browse.sync,
    browse.delete, ui.ui, check.check,
):  # fmt: skip
    main.add_command(command)


def _main() -> int:
    """`main()` with click's standalone handling, except that Ctrl-C exits 130 (click says
    "Aborted!" and exits 1)."""
    try:
        returned = main.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            return 130
        click.echo("Aborted!", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        return 130
    return returned if isinstance(returned, int) else 0


def entry() -> None:
    """The `sweep` command: `main()`, then exit without the interpreter's teardown.

    Tearing down the modules MLflow, SQLAlchemy, pandas and matplotlib import costs seconds
    after commands that are themselves seconds long (bench/exit.py, medians: `sweep report`
    7.64 -> 5.96 s, `sweep runs` 3.22 -> 2.38 s, `sweep studies` 0.97 -> 0.71 s). By the time
    `main()` returns every file is closed, every run finished and every transaction
    committed, so the only thing left to do is flush the standard streams. This is the one
    place softsweep skips the teardown.
    """
    import logging

    # A stream the caller closed (`sweep run ... 2>&-`) is None in Python: the command still
    # does its work, and what it would have said there goes nowhere, as the caller asked.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))
    try:
        code = _main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message")
            click.echo(str(exc.code), err=True)
            code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
