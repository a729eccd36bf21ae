"""Drawing the report in a helper process, so that it costs the sweep almost no time.

The report is Python work: importing matplotlib and Optuna's importance code takes ~2 s of one
core, drawing the figures another ~1 s. In the sweep's own process all of it would be on the
critical path: the GIL lets no other Python thread run beside it, and training is over by
then. A helper process started with the sweep does the imports while the sweep imports MLflow
and loads the data (work that leaves part of the second core idle), waits while the sweep
trains, and draws while the sweep finishes its MLflow runs, with a forked child of its own
drawing half of the figures (the sweep's process leaves the second core idle by then: -0.3 s).
The `StudyView` it is sent is plain data; the files are the same bytes as when drawn in process
(`sweep report` draws in process, in one process).

Anything that goes wrong with the helper itself (it cannot start, it dies) makes the report be
drawn in the sweep's process instead: a slower report, never a lost one.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from . import report as reports
from .studyview import StudyView

__all__ = ["ReportDrawer"]


def _warm_up() -> None:
    """In the helper, as soon as it starts: the imports and the first-drawing costs (fonts,
    math text), so that drawing later is only drawing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle
    # When the sweep shuts the helper down, exit without the interpreter's teardown of
    # matplotlib, SciPy and the rest (~0.5 s the sweep would wait for): the first exit handler.
    atexit.register(os._exit, 0)
    # Optuna's importance package imports scikit-learn (~1.3 s, with SciPy) for its fANOVA
    # evaluator. Reports use PED-ANOVA, Optuna's default, which needs neither; this process only
    # draws reports, so scikit-learn is kept out of it (fANOVA is unavailable here, nowhere else).
    sys.modules.setdefault("sklearn", None)  # type: ignore[arg-type]
    reports.warm_up()
    reports.SPLIT_WORK = True


def _can_spawn() -> bool:
    """A spawned process starts by re-running the main script from its file. A script that
    has none to re-run (`python - <<EOF`: `__file__` is '<stdin>') would make the helper die
    with a traceback on the terminal; an interactive session or `python -c` has no `__file__`
    at all, and spawning works."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path is None or os.path.isfile(path)


def _draw(view: StudyView, folder: Path) -> reports.Report:
    return reports.write_report(view, folder)


class ReportDrawer:
    """One helper process for one report. `submit` hands it the view; `result` returns the
    `Report` (or raises what `write_report` raised)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._job: Future[reports.Report] | None = None
        self._args: tuple[StudyView, Path] | None = None
        if not _can_spawn():
            return  # drawn in this process
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),  # no fork: the sweep has threads
            initializer=_warm_up,
        )
        self._pool.submit(int)  # start the process (and its warm-up) now

    def submit(self, view: StudyView, folder: Path) -> None:
        self._args = (view, folder)
        if self._pool is not None:
            try:
                self._job = self._pool.submit(_draw, view, folder)
            except RuntimeError:  # the helper is gone (BrokenProcessPool)
                self._job = None

    def result(self) -> reports.Report:
        if self._args is None:
            raise RuntimeError("ReportDrawer.result before submit")
        try:
            if self._job is not None:
                return self._job.result()
        except Exception:
            # The helper died, or the view did not reach it, or drawing raised: draw here. An
            # error of the report's own (no finished trial) is raised again, from this process.
            pass
        finally:
            self.close()
        return reports.write_report(*self._args)

    def close(self) -> None:
        if self._pool is not None:
            # Waited for, so that its queues are released before `sweep` exits with os._exit
            # (else multiprocessing's resource tracker warns of leaked semaphores).
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
