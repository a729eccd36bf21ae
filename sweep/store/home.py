"""Where a sweep's data lives: a `Home` turns a folder (or --storage / --tracking-uri) into the
two stores, the artifact root and the report folder, once. Nothing else builds a store URL.

The embedded default is one folder (`--home`, else $SOFTSWEEP_HOME, else ./.softsweep):

    <home>/optuna.db        Optuna's RDB storage (SQLite)
    <home>/mlflow.db        MLflow's tracking store (SQLite)
    <home>/mlartifacts/     MLflow's artifacts (weights, reports), one folder per experiment
    <home>/reports/<study>/ the rendered reports
    <home>/owners/          one lock file per live sweep process (see `Owner` below)

With --storage (e.g. PostgreSQL) and --tracking-uri (an MLflow server) the stores are there
instead, and the folder keeps only the reports and the owners' locks.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .waits import bound

__all__ = ["Home", "Owner", "owner_alive", "passwords", "safe_url", "scrub"]


def safe_url(url: str) -> str:
    """A store URL as softsweep shows, logs and stores it: the password masked as ***."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def passwords(*urls: str | None) -> list[str]:
    """The passwords inside these URLs, as a URL quotes them (`:password@`), to scrub from any
    text that might quote the URL (a driver's error); the bare string could be any word."""
    from urllib.parse import unquote, urlsplit

    found = []
    for url in urls:
        try:
            password = urlsplit(url or "").password
        except ValueError:
            continue
        if password:
            found += [f":{password}@", f":{unquote(password)}@"]
    return found


def scrub(text: str, *urls: str | None) -> str:
    """`text` with the passwords of these URLs masked wherever it quotes them."""
    for secret in passwords(*urls):
        text = text.replace(secret, ":***@")
    return text


def _check_userinfo(url: str, option: str) -> None:
    """A password holding an un-encoded '@' splits the URL at the wrong place, and the driver's
    error then quotes the rest of it: refuse it before anything connects, without showing it."""
    scheme, sep, rest = url.partition("://")
    netloc = rest.split("/", 1)[0]
    if sep and netloc.count("@") > 1:
        raise ValueError(
            f"{option} ({scheme}://...) has more than one '@' before its host: a user name or "
            "password that holds '@' (or ':', '/', '%') must be URL-encoded, '@' as %40, for "
            "example with python -c \"import urllib.parse; print(urllib.parse.quote('PASSWORD', "
            "safe=''))\". The URL is not shown here because it holds a password."
        )


@dataclass(frozen=True, repr=False)
class Home:
    folder: Path
    storage: str  # Optuna storage URL
    tracking_uri: str  # MLflow tracking URI

    def __repr__(self) -> str:  # (a notebook shows it: no password in it)
        return (
            f"Home(folder={str(self.folder)!r}, storage={self.shown_storage!r}, "
            f"tracking_uri={self.shown_tracking_uri!r})"
        )

    def __post_init__(self) -> None:
        _check_userinfo(self.storage, "--storage")
        _check_userinfo(self.tracking_uri, "--tracking-uri")
        for url in (self.storage, self.tracking_uri):
            if url.startswith("postgresql"):
                bound(url)  # a database that stops answering: seconds, and Ctrl-C, not forever

    @classmethod
    def resolve(
        cls,
        home: str | Path | None = None,
        *,
        storage: str | None = None,
        tracking_uri: str | None = None,
        create: bool = True,
    ) -> Home:
        """The home for these options; the folder is created unless only read from."""
        folder = Path(home or os.environ.get("SOFTSWEEP_HOME") or ".softsweep")
        if create:
            if folder.exists() and not folder.is_dir():
                raise ValueError(
                    f"--home must be a folder, got {folder}, which is a file. Pass a folder "
                    "(it is created if missing)."
                )
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(
                    f"--home {folder} cannot be created ({exc.strerror}). Pass a folder you "
                    "can write to."
                ) from None
        folder = folder.resolve()
        return cls(
            folder=folder,
            storage=storage or f"sqlite:///{folder / 'optuna.db'}",
            tracking_uri=tracking_uri or f"sqlite:///{folder / 'mlflow.db'}",
        )

    @property
    def shown_storage(self) -> str:
        return safe_url(self.storage)

    @property
    def shown_tracking_uri(self) -> str:
        return safe_url(self.tracking_uri)

    @property
    def embedded_storage(self) -> bool:
        """Optuna's storage is this folder's SQLite file (one machine by construction)."""
        return self.storage == f"sqlite:///{self.folder / 'optuna.db'}"

    @property
    def embedded_tracking(self) -> bool:
        """MLflow's store is this folder's SQLite file."""
        return self.tracking_uri == f"sqlite:///{self.folder / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path | None:
        """Where MLflow keeps the artifacts of a store softsweep opens itself, SQLite or a
        database such as PostgreSQL (None: an MLflow server decides). Without it MLflow puts
        them under ./mlruns of whatever folder the command ran in."""
        served = self.tracking_uri.startswith(("http://", "https://", "databricks"))
        return None if served else self.folder / "mlartifacts"

    @property
    def owners(self) -> Path:
        return self.folder / "owners"

    def report_dir(self, study_name: str) -> Path:
        return self.folder / "reports" / study_name

    def ui(self) -> tuple[str, str]:
        """The MLflow UI of this home's runs, and how to start it: the tracking server itself,
        or `sweep ui` on the embedded store ('' for a database with no server in front)."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.shown_tracking_uri, ""
        if self.embedded_tracking:
            return "http://127.0.0.1:5000", f"start it with: sweep ui --home {self.folder}"
        return "", ""


# -- owners: which live process holds a trial ------------------------------------------------
class Owner:
    """This process's claim on its trials: a lock on `<home>/owners/<host>-<pid>.lock`, held
    until the process ends (the kernel releases it even on SIGKILL). Another process on this
    machine that can take the lock knows the owner is gone."""

    def __init__(self, home: Home) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.folder = home.owners
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = open(_lock_path(self.folder, self.name), "a")  # held open: the lock
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def close(self) -> None:
        if not self._file.closed:
            Path(self._file.name).unlink(missing_ok=True)
            self._file.close()

    def alive(self, name: str) -> bool | None:
        """Whether the process `name` ('host:pid') is alive (see `owner_alive`)."""
        return True if name == self.name else owner_alive(self.folder, name)

    def others_alive(self) -> bool:
        """Whether any other process holds a lock in this home."""
        mine = _lock_path(self.folder, self.name)
        return any(p != mine and not _free(p) for p in self.folder.glob("*.lock"))


def owner_alive(owners: Path, name: str) -> bool | None:
    """Whether the process `name` ('host:pid') that locked in the home's `owners` folder is
    alive; None when this cannot be told from here (another machine, or a process that did
    not lock in this home)."""
    host, _, _ = name.rpartition(":")
    path = _lock_path(owners, name)
    if host != socket.gethostname() or not path.exists():
        return None
    return not _free(path)


def _lock_path(folder: Path, name: str) -> Path:
    return folder / (name.replace(":", "-").replace("/", "_") + ".lock")


def _free(path: Path) -> bool:
    """Take and release the lock at once: True when nobody holds it (its owner is gone)."""
    try:
        with open(path, "a") as probe:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(probe, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    except OSError:  # unreadable: cannot prove anything
        return False
