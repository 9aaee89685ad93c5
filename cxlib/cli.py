"""The ``cx`` command line.

Every command prints a clear message and exits with status 2 on bad input (a
missing file, an invalid spec, data that do not match their spec) — never a
traceback. Heavy libraries load only inside the command that needs them, so
``cx --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from cxlib import __version__
from cxlib.errors import CxError

EXIT_BAD_INPUT = 2


class _Group(click.Group):
    """A click group that turns cxlib's input errors into a message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CxError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            # the reader went away (`cx runs | head -3`): click ends quietly, no traceback
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - last line of defence for users
            if os.environ.get("CX_DEBUG"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in cx; run again with CX_DEBUG=1 to see the traceback and report it.",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cx")
def cx() -> None:
    """Cx workbench: Bayesian customer-experience research from the command line."""


_study_option = click.option(
    "--study",
    "study_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The study spec (YAML).",
)


@cx.command()
@_study_option
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option(
    "--delimiter",
    default=None,
    help="Field delimiter of a text export (default: the spec's, or ',').",
)
@click.option(
    "--encoding", default=None, help="Text encoding of the export (default: the spec's, or utf-8)."
)
@click.option("--sheet", default=None, help="Excel sheet to read (default: the first).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def validate(
    study_path: Path, data: Path | None, delimiter, encoding, sheet, as_json: bool
) -> None:
    """Validate DATA against the study spec and print a data-quality report.

    DATA defaults to the spec's source.file. Exits 0 when the data are valid,
    2 with a message naming the file, columns, rows and values when not.
    """
    from cxlib.data import load_responses
    from cxlib.study import load_study

    study = load_study(study_path)
    responses = load_responses(study, data, delimiter=delimiter, encoding=encoding, sheet=sheet)
    report = responses.quality_report()
    click.echo(report.to_json() if as_json else report.to_text())


@cx.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("study.yaml"),
    show_default=True,
    help="Where to write the drafted study spec.",
)
@click.option("--force", is_flag=True, help="Replace --out when it exists.")
@click.option(
    "--delimiter", default=None, help="Field delimiter of a text export (default: sniffed)."
)
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the export.")
@click.option("--sheet", default=None, help="Excel sheet to read (default: the first).")
@click.option("--name", default=None, help="The study's name (default: from the file name).")
def init(data: Path, out: Path, force: bool, delimiter, encoding: str, sheet, name) -> None:
    """Draft a commented study spec from DATA (CSV, Qualtrics, SPSS, Excel, Parquet).

    The draft proposes an id column (or row numbers), scales, missing-value codes,
    segments, waves, constructs by item-name prefix and personal-data columns. It is
    valid as written: edit it, then run `cx validate --study OUT DATA`. An existing
    OUT is never replaced without --force.
    """
    from cxlib.data.draft import draft_study
    from cxlib.errors import StudySpecError

    if out.exists() and not force:
        raise StudySpecError(
            f"{out}: the file exists; cx init does not overwrite a study spec "
            "(give another --out, or --force to replace it)"
        )
    draft = draft_study(
        data, delimiter=delimiter, encoding=encoding, sheet=sheet, spec_dir=out.parent, name=name
    )
    draft.write(out, force=force)
    click.echo(f"drafted {_shown(out)} from {_shown(data)}:")
    for line in draft.findings:
        click.echo(f"  - {line}")
    n_items = len(draft.study.item_names)
    click.echo(
        f"  - {len(draft.spec['constructs'])} construct stub(s), {n_items} item(s)\n"
        f"next: edit {_shown(out)}, then `cx validate --study {_shown(out)} {_shown(data)}`"
    )


@cx.command()
@_study_option
@click.option(
    "--n", "n", type=click.IntRange(min=1), default=None, help="Respondents (default: the truth's)."
)
@click.option("--seed", type=int, default=None, help="Random seed (default: the truth's).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Output file (.parquet, .csv, .xlsx, .sav).",
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="True parameters (YAML); default: plain loadings and paths.",
)
@click.option(
    "--continuous",
    is_flag=True,
    help="Write the continuous latent responses instead of answers on the scales.",
)
def simulate(study_path: Path, n, seed, out: Path, truth_path, continuous: bool) -> None:
    """Simulate survey responses for a study from known true parameters."""
    import time

    from cxlib.simulate import Truth, simulate_responses, write_responses
    from cxlib.study import load_study

    study = load_study(study_path)
    truth = Truth.from_yaml(truth_path) if truth_path else None
    start = time.perf_counter()
    frame = simulate_responses(study, truth, n=n, seed=seed, discretize=not continuous)
    elapsed = time.perf_counter() - start
    write_responses(frame, out)
    click.echo(
        f"simulated {len(frame):,} respondents x {len(study.item_names)} items in {elapsed:.1f} s -> {out}"
    )


@cx.command()
@click.option("--force", is_flag=True, help="Rebuild the data even when it exists.")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the sample study goes (default: ./data/telecom of the working directory).",
)
def sample(force: bool, folder: Path | None) -> None:
    """Build the sample study (a telecom CX tracker) in ./data/telecom if it is missing.

    The study spec, its truth and side tables ship with cxlib and are copied where
    missing (files already there are kept); the responses are simulated from them, and
    so are the web and app sessions' event log and intercept-survey ratings the spec
    declares under ``source.events``.
    """
    from cxlib.models.digital.sample import build_sample_sessions
    from cxlib.simulate import build_sample_data

    path, rebuilt = build_sample_data(force=force, folder=folder)
    if rebuilt:
        click.echo(f"sample study data written: {_shown(path)}")
    else:
        click.echo(f"sample study data up to date: {_shown(path)}")
    log, rebuilt = build_sample_sessions(path.parent, force=force or rebuilt)
    if log is not None:
        state = "written" if rebuilt else "up to date"
        click.echo(f"sample study sessions {state}: {_shown(log)}")


# ----------------------------------------------------------------------------- pipelines
_pipeline_argument = click.argument("pipeline", type=click.Path(path_type=Path, dir_okay=False))
_runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Runs directory (default: the pipeline's runs_dir, else $CX_RUNS_DIR or ./runs).",
)
_db_option = click.option(
    "--db",
    "results_db",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Results store, a DuckDB file (default: the pipeline's results_db, else "
    "results.duckdb in the runs directory).",
)


def _executor_options(command):
    """``--jobs``, ``--executor`` and ``--scheduler``, shared by ``cx run`` and ``cx schedule``."""
    command = click.option(
        "--scheduler",
        "dask_scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler address, e.g. tcp://HOST:8786 (implies --executor dask).",
    )(command)
    command = click.option(
        "--executor",
        type=click.Choice(["local", "dask"]),
        default=None,
        help="Where notebooks run: here (local, default) or on a Dask cluster.",
    )(command)
    return click.option(
        "--jobs",
        "-j",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Notebook runs executed at once (local executor).",
    )(command)


def _executor(executor: str | None, dask_scheduler: str | None) -> str:
    if executor == "local" and dask_scheduler:
        raise click.UsageError(
            "--scheduler is the Dask scheduler's address; use it with --executor dask"
        )
    return executor or ("dask" if dask_scheduler else "local")


def _pipeline_logging(level: int | None = None) -> None:
    """Log the pipeline's progress to stderr (papermill's own chatter only when it warns)."""
    import logging

    logging.getLogger("papermill").setLevel(logging.WARNING)
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    log = logging.getLogger("cxlib.pipeline")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(level or logging.INFO)
        log.propagate = False


@cx.command("run")
@_pipeline_argument
@click.option("--study", default=None, help="Run only this study (its name in the study spec).")
@_executor_options
@click.option("--force", is_flag=True, help="Run even what is up to date.")
@click.option("--fast", is_flag=True, help="Apply the pipeline's fast_parameters (small draws).")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="Wait this long for another runner of the same study (default: stop at once).",
)
@_runs_dir_option
@_db_option
@click.pass_context
def run_command(
    ctx: click.Context,
    pipeline: Path,
    study,
    jobs: int,
    executor,
    dask_scheduler,
    force: bool,
    fast: bool,
    wait_s: float,
    runs_dir,
    results_db,
) -> None:
    """Run PIPELINE now: execute its notebooks, check the quality gates, publish.

    Runs that are up to date (same data, parameters, notebook and code) are
    skipped unless --force. Prints a summary table; exits 1 when any run failed
    or was stopped by a quality gate (the previously published result then stays
    live), 2 when the pipeline spec or anything it names is invalid (nothing runs).
    """
    from cxlib.pipeline.runner import run_pipeline

    _pipeline_logging()
    result = run_pipeline(
        pipeline,
        study=study,
        jobs=jobs,
        force=force,
        fast=fast,
        executor=_executor(executor, dask_scheduler),
        scheduler=dask_scheduler,
        runs_dir=runs_dir,
        results_db=results_db,
        wait_s=wait_s,
    )
    click.echo(result.summary_table())
    if not result.ok:
        ctx.exit(1)


@cx.group("runs", invoke_without_command=True)
@click.option("--study", default=None, help="Only this study's runs.")
@click.option(
    "--status",
    default=None,
    help="Only runs with this status (succeeded, failed, gated, aborted, not_applicable, damaged).",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_db_option
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The runs directory the catalog mirrors (default: $CX_RUNS_DIR or ./runs, or the "
    "folder of --db).",
)
@click.pass_context
def runs(ctx: click.Context, study, status, limit: int, results_db, runs_dir) -> None:
    """List the run catalog, newest first (* = published); `cx runs show RUN` shows one.

    The catalog first catches up with the run folders (a runner killed after publishing
    leaves it behind); an unreadable catalog file is moved aside and rebuilt from them.
    Statuses: succeeded, failed, gated, aborted, not_applicable, damaged (a run whose
    artifacts no longer match their checksums; the next `cx run` re-runs its slot).
    """
    if ctx.invoked_subcommand is not None:
        return
    from cxlib import config
    from cxlib.pipeline.artifacts import ARTIFACT_FORMAT
    from cxlib.pipeline.store import ResultsStore

    store = ResultsStore(results_db)
    root = runs_dir or (store.path.parent if results_db else config.RUNS_DIR)
    store.runs_dir = Path(root)
    with _store_warnings():
        if store.exists() and store.upgrade():  # tables of an older artifact format: reloaded
            click.echo(
                f"results store rebuilt from the run folders (artifact format {ARTIFACT_FORMAT})",
                err=True,
            )
        if store.exists() or Path(root).is_dir():
            store.catch_up(root)
        rows = store.runs(study=study, status=status, limit=limit)
    if not rows:
        where = "" if store.exists() else f" (no results store at {_shown(store.path)})"
        click.echo(f"no runs{where}")
        return
    head = ("run", "study", "notebook/set", "status", "started (UTC)", "time")
    table = [
        (
            r["run_id"] + (" *" if r["published"] else ""),
            r["study"],
            r["slot"] or "",
            r["status"],
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}" if r["started_at"] else "",
            f"{r['duration_s']:.1f} s" if r["duration_s"] is not None else "",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    for row in (head, *table):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@contextmanager
def _store_warnings():
    """Print the results store's warnings (a rebuild, a damaged pointer) as plain lines."""
    import logging

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            click.echo(f"warning: {record.getMessage()}", err=True)

    log = logging.getLogger("cxlib.pipeline.store")
    handler, propagate = Echo(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run's manifest as JSON.")
@_db_option
@_runs_dir_option
def runs_show(run_id: str, as_json: bool, results_db, runs_dir) -> None:
    """Show one run (by id or a unique prefix): status, parameters, timings, error, files."""
    import json

    from cxlib.pipeline.errors import RunNotFoundError
    from cxlib.pipeline.publish import read_pointer
    from cxlib.pipeline.store import ResultsStore

    store = ResultsStore(results_db)
    try:
        row = store.find_run(run_id)
    except ValueError as exc:
        raise RunNotFoundError(str(exc)) from None
    if row is not None:
        manifest_path = Path(row["run_dir"]) / "manifest.json"
    else:
        from cxlib import config

        root = Path(runs_dir or config.RUNS_DIR)
        found = sorted(root.glob(f"*/{run_id}*/manifest.json"))
        if len(found) != 1:
            what = (
                "matches several runs" if found else "is not in the catalog nor in " + _shown(root)
            )
            raise RunNotFoundError(f"run {run_id!r} {what}; `cx runs` lists them")
        manifest_path = found[0]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunNotFoundError(f"run {run_id!r}: cannot read {manifest_path}: {exc}") from None
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    pointer = read_pointer(manifest_path.parent.parent) or {}
    live = any(e["run_id"] == manifest["run_id"] for e in pointer.get("runs", {}).values())
    timings = manifest.get("timings", {})
    lines = [
        ("run", manifest["run_id"]),
        ("status", manifest["status"] + (" (published)" if live else "")),
        ("study", f"{manifest['study']}  (pipeline {manifest.get('pipeline', '?')})"),
        ("notebook", f"{manifest['notebook']['name']}  (parameter set {manifest['label']})"),
        ("started", timings.get("started_at", "?")),
        (
            "duration",
            f"{timings.get('duration_s', '?')} s (notebook {timings.get('execution_s', '?')} s, "
            f"HTML {timings.get('export_s', '-')} s)",
        ),
        ("data", f"{manifest['data']['path']}  sha256 {str(manifest['data']['hash'])[:12]}"),
        ("code", manifest.get("code", {}).get("version", "?")),
    ]
    lines += [("parameter", f"{k} = {v!r}") for k, v in manifest.get("parameters", {}).items()]
    diagnostics = manifest.get("diagnostics") or {}
    if diagnostics:
        plain = {k: v for k, v in diagnostics.items() if not isinstance(v, dict | list)}
        lines.append(("diagnostics", ", ".join(f"{k} {v}" for k, v in plain.items())))
        improper = diagnostics.get("improper") or {}
        lines += [("improper", p.get("message", "")) for p in improper.get("problems", [])]
    lines += [("gate failed", g) for g in manifest.get("gate_failures") or []]
    if manifest.get("reason"):
        lines.append(("not applicable", manifest["reason"]))
    error = manifest.get("error")
    if error:
        lines.append(("error", f"{error.get('type')}: {error.get('message')}"))
        if error.get("cell_index") is not None:
            lines.append(("in cell", f"{error['cell_index']} (0-based, of the executed notebook)"))
    lines += [
        ("folder", manifest.get("run_dir", "")),
        ("notebook", manifest["notebook"].get("executed") or "(none)"),
        ("html", manifest["notebook"].get("html") or "(none)"),
        (
            "artifacts",
            f"{len(manifest.get('artifacts', []))} file(s) in {manifest.get('output_dir')}",
        ),
    ]
    lines += [("warning", w) for w in manifest.get("warnings", [])]
    for key, value in lines:
        click.echo(f"{key:<12} {value}")
    if error and error.get("traceback"):
        click.echo("\n" + error["traceback"])


@cx.command()
@_pipeline_argument
@_executor_options
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(min=0.01),
    default=None,
    metavar="SECONDS",
    help="Seconds between checks (default: the spec's schedule.poll_s).",
)
@click.option("--once", is_flag=True, help="Check once, run what is due, wait for it, and exit.")
@_runs_dir_option
@_db_option
def schedule(
    pipeline: Path, jobs: int, executor, dask_scheduler, poll_s, once: bool, runs_dir, results_db
) -> None:
    """Keep PIPELINE's studies fresh: run on its cron schedule and when the data change.

    A refresh of a study never overlaps another one of the same study; a
    scheduled time missed while this was not running is caught up once. Stop
    with Ctrl-C or SIGTERM (running refreshes finish first).
    """
    from cxlib.pipeline.schedule import Scheduler

    _pipeline_logging()
    options = {
        "jobs": jobs,
        "executor": _executor(executor, dask_scheduler),
        "scheduler": dask_scheduler,
        "runs_dir": runs_dir,
        "results_db": results_db,
    }
    scheduler = Scheduler(pipeline, run_options=options)
    if once:
        started = scheduler.tick()
        scheduler.wait()
        click.echo(
            f"{len(started)} refresh(es) started"
            + "".join(f"\n  {t.study}: {t.reason} ({t.detail})" for t in started)
        )
        return
    import signal
    import threading

    stop = threading.Event()

    def _stop(signum, _frame) -> None:  # systemd stops services with SIGTERM
        click.echo(f"received signal {signum}: stopping after the running refreshes", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    scheduler.run_forever(poll_s=poll_s, stop=stop)


# ----------------------------------------------------------------------------- dashboards
@cx.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8866, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (localhost only by default; put a reverse proxy with "
    "authentication in front before opening it to a team).",
)
@_runs_dir_option
def serve(port: int, host: str, runs_dir) -> None:
    """Serve the executive dashboards (Voila) over the published studies.

    Viewers see only published results of the studies found in the runs
    directory; settings come from voila.json at the repository root.
    """
    from cxlib.dashboard.serve import serve as serve_dashboards

    serve_dashboards(port, host, runs_dir=runs_dir, echo=click.echo)


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Run the ``cx`` command line; return its exit status."""
    try:
        cx.main(args=argv, prog_name="cx", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
