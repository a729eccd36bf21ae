"""The `sweep` commands that look after studies: runs, studies, report, sync and delete."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from .options import EXIT_FAILURE, EXIT_USAGE, fail, friendly_errors, stores

# The columns `sweep runs` shows, as far as the terminal is wide (--json and --csv: all), the
# result first: a narrow terminal drops columns from the right, and keeps what was found and why
# a trial failed before the bookkeeping.
SHOWN = [
    "trial", "outcome", "val_accuracy", "test_accuracy", "learning_rate", "reg", "batch_size",
    "fail_reason", "last_val_accuracy", "epochs_run", "train_time_s", "start_time",
]  # fmt: skip
STATES = ("complete", "pruned", "failed", "running", "waiting")


@click.command(short_help="A study's trials as a table (or JSON, CSV).")
@click.argument("study")
@stores
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the first N rows.")
@click.option(
    "--sort",
    "sort_by",
    default=None,
    help="Sort by this column (descending for accuracies, ascending otherwise) [default: best "
    "first].",
)
@click.option("--state", type=click.Choice(STATES), default=None, help="Only trials in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records (every column).")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the table (every column) to this CSV file ('-': print CSV instead).",
)
@friendly_errors
def runs(
    study: str,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    top: int | None,
    sort_by: str | None,
    state: str | None,
    as_json: bool,
    csv_path: Path | None,
) -> None:
    """Trials of STUDY as a table: params, accuracies, state.

    Best first; the columns that fit the terminal (all of them with --json or --csv).
    """
    import shutil

    from ..compare import COLUMNS, TrackingUnreadableWarning, load_runs

    to_stdout = csv_path is not None and str(csv_path) == "-"
    if csv_path is not None and not to_stdout and not csv_path.parent.is_dir():
        raise FileNotFoundError(
            f"--csv {csv_path}: the folder {csv_path.parent} does not exist. Create it first, "
            "or write the file somewhere else."
        )
    if sort_by is not None and sort_by not in COLUMNS:
        raise ValueError(
            f"--sort must be one of the columns {', '.join(COLUMNS)}, got {sort_by!r}."
        )
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", TrackingUnreadableWarning)
        frame = load_runs(study, home=home, tracking_uri=tracking_uri, storage=storage)
    for warning in said:
        if issubclass(warning.category, TrackingUnreadableWarning):
            click.echo(f"note: {warning.message}", err=True)
    if state is not None:
        wanted = {"failed": "FAIL"}.get(state, state.upper())
        frame = frame[frame["state"] == wanted]
    if sort_by is not None:
        descending = "accuracy" in sort_by
        frame = frame.sort_values([sort_by, "trial"], ascending=[not descending, True],
                                  na_position="last")  # fmt: skip
    if top is not None:
        frame = frame.head(top)
    frame = frame.reset_index(drop=True)
    if to_stdout:
        click.echo(frame.to_csv(index=False), nl=False)
        return
    if csv_path is not None:
        frame.to_csv(csv_path, index=False)
    if as_json:
        click.echo(frame.to_json(orient="records", date_format="iso", indent=1))
        return
    if frame.empty:
        click.echo(f"study {study!r} has no trials{' in that state' if state else ' yet'}.")
        return
    shown = frame[SHOWN].copy()
    shown["fail_reason"] = shown["fail_reason"].str.slice(0, 40)
    shown["start_time"] = shown["start_time"].dt.strftime("%m-%d %H:%M:%S")
    width = shutil.get_terminal_size((120, 24)).columns
    for column in SHOWN:  # accuracies to 4 decimals (0.8560, not 0.856: read down the column)
        if column.endswith("accuracy"):
            shown[column] = shown[column].map(_accuracy)
    for end in range(len(SHOWN), 1, -1):  # drop columns from the right until it fits
        text = shown[SHOWN[:end]].to_string(
            index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"
        )
        if max(len(line) for line in text.splitlines()) <= width:
            break
    click.echo(text)


def _accuracy(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"  # NaN: not measured


@click.command(short_help="Draw a study's report again from its stores.")
@click.argument("study")
@stores
@friendly_errors
def report(study: str, home: Path | None, storage: str | None, tracking_uri: str | None) -> None:
    """Rebuild the report of STUDY from its stored trials and runs (no training), and log it to
    the study's MLflow run when it has one."""
    from ..closing import report_key
    from ..data import load_data
    from ..report.files import write_report
    from ..report.view import gather
    from ..signals import checkpoint
    from ..store.home import Home
    from ..store.notes import read_notes
    from ..store.study import load_study, stored_spec
    from ..track.tracker import Tracker
    from ..trial import test_evaluations

    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    stored = load_study(study, where)
    spec = stored_spec(stored, where.storage)
    # The tested trial's predictions are drawn again from its weights (the same evaluation);
    # without the data files the report goes without those figures.
    try:
        data = load_data(spec) if test_evaluations(stored.user_attrs) else None
    except (OSError, ValueError):
        data = None
    tracker = Tracker(where.tracking_uri, study, create=False)
    try:
        tracker.find_study_run(study)
        checkpoint("report")
        view = gather(stored, spec, tracker, where, data=data)
        # (a report drawn without the data lacks the test figures: a later run draws it again)
        tested = test_evaluations(stored.user_attrs)
        notes = read_notes(stored, where.storage)
        key = report_key(stored, notes) if data is not None or not tested else ""
        written = write_report(view, where.report_dir(study), drawn_for=key)
        if tracker.parent_id is not None:
            tracker.log_reports(written.files)
    finally:
        tracker.close()
    for path in written.files:
        click.echo(str(path))
    for note in written.notes:
        click.echo(f"note: {note}", err=True)
    for problem in tracker.errors:
        click.echo(f"warning: {problem}", err=True)
    click.echo(
        f"open {written.index} in a browser"
        + (
            "; the files are also artifacts of the study's MLflow run (reports/)"
            if tracker.parent_id
            else ""
        )
    )
    if view.best is None:
        fail(
            f"study {study!r} has no completed trial: the report holds only the heatmap of "
            f"why its trials ended. See `sweep runs {study}` for the reasons.",
            EXIT_FAILURE,
        )


@click.command(short_help="Make MLflow agree with Optuna for a study.")
@click.argument("study")
@stores
@friendly_errors
def sync(study: str, home: Path | None, storage: str | None, tracking_uri: str | None) -> None:
    """Make MLflow agree with Optuna for STUDY: runs made or completed from the trials."""
    from ..store.home import Home
    from ..track.sync import sync_study

    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    done = sync_study(study, where)
    ended = f"; the study's run ended now as {done.study_run}" if done.study_run_ended else ""
    click.echo(
        f"study {study!r}: {len(done.run_ids)} trial runs in MLflow; {done.created} made and "
        f"{done.completed} completed now from Optuna{ended}."
    )


@click.command(short_help="List the studies: progress, trials by state, best, last activity.")
@stores
@click.option("--json", "as_json", is_flag=True, help="One JSON list, for scripts.")
@friendly_errors
def studies(
    home: Path | None, storage: str | None, tracking_uri: str | None, as_json: bool
) -> None:
    """Every study in the home (or --storage): trials by state, best, last activity."""
    from ..admin import study_summaries
    from ..store.home import Home

    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    found = study_summaries(where)
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in found], indent=2))
        return
    if not found:
        click.echo(f"no studies in {where.shown_storage}: `sweep run STUDY.toml` starts one.")
        return
    rows = [
        [
            s.name,
            "-" if s.target is None else f"{s.done}/{s.target}",
            ", ".join(f"{n} {state.lower()}" for state, n in s.states.items()) or "no trials",
            "-" if s.best_value is None else f"{s.best_value:.4f}",
            "-" if s.last_activity is None else s.last_activity.strftime("%Y-%m-%d %H:%M"),
        ]
        for s in found
    ]
    from .check import format_table

    click.echo(format_table(["study", "done", "trials", "best val acc", "last activity"], rows))


@click.command(short_help="Delete a study: Optuna trials, MLflow runs, report.")
@click.argument("study")
@stores
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.option(
    "--force", is_flag=True, help="Stop the sweeps on the study first (on this machine: SIGTERM)."
)
@friendly_errors
def delete(
    study: str,
    home: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    yes: bool,
    force: bool,
) -> None:
    """Delete STUDY: its Optuna study, MLflow runs and report. A study that a sweep is working
    on is not deleted unless --force, which stops that sweep first."""
    from ..admin import delete_study, plan_deletion, stop_sweeps
    from ..store.home import Home

    where = Home.resolve(home, storage=storage, tracking_uri=tracking_uri, create=False)
    plan = plan_deletion(study, where)
    if plan.live and not force:
        fail(plan.refusal(), EXIT_FAILURE)
    click.echo(f"This deletes:\n{plan.describe()}")
    if plan.live:
        click.echo(f"  and first stops the sweeps on it: {', '.join(plan.live)}")
    if not yes:
        try:
            sure = click.confirm("Delete it?", default=False)
        except click.Abort:  # no answer: stdin is closed, or not a terminal with nothing on it
            fail(
                f"sweep delete {study} asks before it deletes, and no answer came (stdin gave "
                "nothing). Nothing was deleted. Pass --yes to delete without asking.",
                EXIT_USAGE,
            )
        if not sure:
            click.echo("nothing deleted.")
            sys.exit(EXIT_FAILURE)
    if plan.live:
        for name in stop_sweeps(plan, where):
            click.echo(f"warning: {name} is on another machine and was not stopped.", err=True)
        plan = plan_deletion(study, where)
    runs = delete_study(plan, where)
    click.echo(f"deleted study {study!r} ({plan.trials} trials, {runs} MLflow runs).")
