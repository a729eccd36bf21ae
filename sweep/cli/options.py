"""What the `sweep` commands share: one-paragraph errors with exit codes, and the options that
say where a study's stores are."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2


def fail(message: str, code: int) -> None:
    """One paragraph on stderr, and the exit code. No password of a store URL given on the
    command line (or in the environment) appears in it, whatever a driver's error quoted."""
    from ..store.home import scrub

    ctx = click.get_current_context(silent=True)
    given = dict(ctx.params) if ctx is not None else {}
    urls = [given.get("storage"), given.get("tracking_uri")]
    urls += [os.environ.get("SOFTSWEEP_STORAGE"), os.environ.get("SOFTSWEEP_TRACKING_URI")]
    message = scrub(message, *urls)
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn: F) -> F:
    """Turn bad input into one paragraph and exit code 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            fail(str(exc), EXIT_USAGE)
        except RuntimeError as exc:  # (one with no message still says what it was)
            fail(str(exc) or f"{type(exc).__name__} (no message)", EXIT_FAILURE)
        except BrokenPipeError:  # `sweep runs | head`: the reader has what it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # (Python's documented way out of EPIPE)
            sys.exit(EXIT_FAILURE)
        except OSError as exc:  # a file softsweep had to write: read-only, full, gone, a folder
            fail(_cannot_write(exc), EXIT_FAILURE)
        except Exception as exc:
            if "MlflowException" in {cls.__name__ for cls in type(exc).__mro__}:
                from ..track.probes import describe

                fail(
                    f"The MLflow tracking store failed ({describe(exc)}). Check --tracking-uri "
                    "(or --home) and that the MLflow server is running, then run the command "
                    "again; Optuna holds every trial, and `sweep sync` rebuilds MLflow from it.",
                    EXIT_FAILURE,
                )
            if not _database_error(exc):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            first = first.removeprefix("(psycopg2.OperationalError) ")
            fail(
                f"A database softsweep reads did not answer or refused the request ({first}). "
                "Check that the database behind --storage (or --tracking-uri) is running and "
                "reachable, then run the command again; nothing was changed.",
                EXIT_FAILURE,
            )

    return wrapper  # type: ignore[return-value]


def _cannot_write(exc: OSError) -> str:
    what = f" {exc.filename}" if exc.filename else ""
    problem = f"softsweep cannot write{what}: {exc.strerror or exc}."
    ctx = click.get_current_context(silent=True)
    home = Path((ctx.params.get("home") if ctx else None) or os.environ.get("SOFTSWEEP_HOME")
                or ".softsweep").resolve()  # fmt: skip
    if exc.filename and home not in Path(str(exc.filename)).resolve().parents:
        return f"{problem} Give a file path you can write to, on a disk with room."
    return f"{problem} Point --home at a folder with room that you can write to, or free space."


def _database_error(exc: BaseException) -> bool:
    """A database driver's or SQLAlchemy's error, or Optuna's wrapper of one."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"SQLAlchemyError", "StorageInternalError", "DatabaseError"})


HOME = click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the embedded stores and reports [default: $SOFTSWEEP_HOME or ./.softsweep].",
)
_STORAGE = click.option(
    "--storage",
    default=None,
    envvar="SOFTSWEEP_STORAGE",
    help="Optuna storage URL, e.g. postgresql+psycopg2://user:pw@host/db [env: "
    "SOFTSWEEP_STORAGE, which keeps a password out of the process list].",
)
_TRACKING = click.option(
    "--tracking-uri",
    default=None,
    envvar="SOFTSWEEP_TRACKING_URI",
    help="MLflow tracking URI, e.g. http://127.0.0.1:5000 [env: SOFTSWEEP_TRACKING_URI].",
)


def stores(command: F) -> F:
    """--home, --storage and --tracking-uri: where a study's stores are."""
    return HOME(_STORAGE(_TRACKING(command)))  # type: ignore[no-any-return]
