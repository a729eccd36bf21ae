"""Bounded waits on PostgreSQL: a database that accepts connections but never answers (a stopped
VM, a network partition, a lock held by a stuck session) costs a command seconds, not forever,
and Ctrl-C is honoured while a call waits on it.

libpq blocks in C until the server answers; no Python signal handler runs meanwhile, and a
server that is stopped (not gone) keeps the TCP connection open, so neither keepalives nor
`connect_timeout` end the wait. psycopg2's documented remedy is a wait callback
(`psycopg2.extensions.set_wait_callback`): libpq then runs non-blocking and the callback waits
on the socket in `select`, where signals are delivered. Ours gives up on a connection that has
not answered within CONNECT_S (connecting) or ANSWER_S (any other call): psycopg2 closes it and
the caller gets an OperationalError, which Optuna, MLflow and the sweep's outage rules already
handle as a database that went away. Once the sweep has been asked to stop (a signal), a wait
lasts at most AFTER_SIGNAL_S, and after one such wait has been cut, none waits at all: the
cleanup's writes are best-effort, and what they could not write the next run does (the trials
in flight are taken back on resume).

The callback is process-wide (psycopg2 has one); it bounds only the databases softsweep opened
(`bound`), and leaves any other psycopg2 connection in the process (a notebook's own) waiting
as libpq would.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any

from .. import signals

__all__ = ["AFTER_SIGNAL_S", "ANSWER_S", "CONNECT_S", "bound", "connect_args"]

CONNECT_S = 5.0  # to open a connection (libpq's connect_timeout, which async mode ignores)
ANSWER_S = 20.0  # for any one answer: Optuna's and MLflow's statements take milliseconds
AFTER_SIGNAL_S = 2.0  # once asked to stop

_lock = threading.Lock()
_ours: set[tuple[str, str, str]] = set()  # (host, port, database) of softsweep's databases
_installed = False
_cut_for: object | None = None  # the interrupt whose cleanup already gave up on the database


def connect_args() -> dict[str, Any]:
    """Connection arguments for softsweep's own engines: the server also ends a statement that
    waits on a lock, and a transaction its client left open, before the client gives up."""
    statement_ms = int((ANSWER_S - 5) * 1000)
    return {
        "connect_timeout": int(CONNECT_S),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "options": f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms} "
        "-c idle_in_transaction_session_timeout=60000",
    }


def bound(url: str) -> None:
    """Bound every wait on the PostgreSQL database at `url` (a SQLAlchemy URL)."""
    global _installed
    import psycopg2.extensions
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # a malformed URL: opening it says what is wrong
        return
    key = (parsed.host or "", str(parsed.port or 5432), parsed.database or "")
    with _lock:
        _ours.add(key)
        if not _installed:
            psycopg2.extensions.set_wait_callback(_wait)
            _installed = True


def _is_ours(connection: Any) -> bool:
    from psycopg2.extensions import parse_dsn

    dsn = parse_dsn(connection.dsn)
    key = (dsn.get("host", ""), str(dsn.get("port", 5432)), dsn.get("dbname", ""))
    return key in _ours


def _wait(connection: Any) -> None:
    """psycopg2's wait callback: poll the connection until its call is done."""
    global _cut_for
    from psycopg2 import OperationalError
    from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE, STATUS_SETUP

    ours = _is_ours(connection)
    limit = CONNECT_S if connection.status == STATUS_SETUP else ANSWER_S
    start = time.monotonic()
    while True:
        state = connection.poll()
        if state == POLL_OK:
            return
        if state not in (POLL_READ, POLL_WRITE):
            raise OperationalError(f"bad state from poll: {state}")
        waited = time.monotonic() - start
        if ours:
            stopping = signals.pending()
            if stopping is not None and (_cut_for is stopping or waited >= AFTER_SIGNAL_S):
                _cut_for = stopping
                if threading.current_thread() is threading.main_thread():
                    stopping.raise_now()  # inside a shielded block: the signal waits no longer
                raise OperationalError(
                    "the database did not answer, and softsweep was asked to stop"
                )
            if waited >= limit:
                raise OperationalError(
                    f"the database server accepted the connection but did not answer within "
                    f"{limit:g} s (is it stopped, or cut off by the network?)"
                )
        sockets = [connection.fileno()]
        # (short slices: a signal's handler runs, and a deadline is seen, within half a second)
        if state == POLL_READ:
            select.select(sockets, [], [], 0.5)
        else:
            select.select([], sockets, [], 0.5)
