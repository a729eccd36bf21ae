"""Probes: an unreachable MLflow store fails in seconds, before any training, with one paragraph
that says what to check; and `describe`, what went wrong with a store in a few words."""

from __future__ import annotations

from ..store.home import safe_url, scrub
from ..store.waits import bound

__all__ = ["StoreUnavailableError", "check_database", "check_server", "describe"]


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """An MLflow server that does not answer /health: a clear error now, not minutes of
    retries later."""
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit, urlunsplit

    # urllib does not take credentials in the URL (http://user:password@host): MLflow's client
    # sends them as HTTP basic auth, and so does the probe.
    parts = urlsplit(uri)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(f"{bare.rstrip('/')}/health")
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            if reply.status == 200:
                return
            problem = f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    uri = safe_url(uri)
    raise RuntimeError(
        f"The MLflow tracking server at {uri} did not answer {uri.rstrip('/')}/health within "
        f"{timeout_s:g} s ({problem}). Check --tracking-uri and that `mlflow server` is running."
    )


def check_database(uri: str, timeout_s: int = 5) -> None:
    """A database tracking URI (PostgreSQL, MySQL) that refuses a connection: a clear error in
    seconds, not after MLflow's ten growing retries (~100 s)."""
    import sqlalchemy

    args = {"connect_timeout": timeout_s} if uri.startswith(("postgresql", "mysql")) else {}
    if uri.startswith("postgresql"):
        bound(uri)
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=args)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = scrub(first, uri)
        raise RuntimeError(
            f"The MLflow tracking database {safe_url(uri)} could not be used ({first}). "
            "Check --tracking-uri (its user, password, host and database) and that the database "
            "server is running and reachable."
        ) from None


def describe(exc: BaseException) -> str:
    """What went wrong with a store, in a few words (MLflow's HTTP errors are one long line)."""
    text = str(exc)
    if isinstance(exc, StoreUnavailableError):
        return text
    if "Connection refused" in text or "Failed to establish a new connection" in text:
        return "connection refused"
    if "timed out" in text.lower() or "Max retries exceeded" in text:
        return "no answer (timed out)"
    if "disk is full" in text or "No space left" in text:
        return "the disk is full"
    first = (text.strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


class StoreUnavailableError(RuntimeError):
    """The store failed a call less than RETRY_S ago: not tried again yet."""
