"""The results store: one DuckDB file with the run catalog and the published tables.

Layout (all in schema ``main``)::

    runs                 one row per run: id, study, notebook, parameter set, status
                         (``not_applicable`` with its ``reason`` when the study lacks
                         what the notebook needs), timings, data hash, diagnostics,
                         gate failures, error
    publications         one row per switch of a study's published pointer
    published_runs       the live run of each study slot (mirrors published.json)
    alert_rules          the alert rules each pipeline declares (evaluated by the
                         insights layer when it lands; nothing evaluates them yet)
    <table>              every tidy table a run wrote (``tables/<table>.parquet``),
                         stacked over runs, with ``run_id`` and ``study`` columns:
                         ``data_quality_summary``, ``data_quality_items``,
                         ``data_quality_cells`` today; ``estimates``, ``effects``,
                         ``kpis``, ``alerts`` when the model notebooks write them
    published_<table>    a view: the rows of the live runs only

Tables are created from the first Parquet file loaded into them and gain columns
when a later run adds some, so a new notebook's tables need no code here. Only
runs that finished and passed their gates are loaded (not ``--fast`` smoke runs). History (trends over
waves) is every loaded run; ``published_*`` is what dashboards show now.

The run folders are the source of truth; :meth:`ResultsStore.sync_study`
rebuilds a study's rows from them (the runner calls it after every publish and
at start, which repairs a store that a crash left behind; ``cx runs`` calls
:meth:`ResultsStore.catch_up`, which syncs the studies whose folders or pointer the
catalog lags). A database file DuckDB cannot read (garbage, a torn copy) is moved
aside as ``results.duckdb.corrupt-<time>`` and the store rebuilt from the run
folders, with one warning line. At the runner's start :meth:`~ResultsStore.sync_study`
also repairs the study folder: a damaged pointer is put back from its previous copy
(:func:`~cxlib.pipeline.publish.restore_pointer`) and a succeeded run whose
artifacts fail their checksums is marked ``damaged`` (:func:`mark_damaged_runs`), so
that the refresh re-runs its slot instead of taking it as up to date. A full disk is
reported as such (:class:`~cxlib.pipeline.provenance.DiskFullError`), naming the file.

Only tables written in the current artifact format (``ARTIFACT_FORMAT``, in each
Parquet file's metadata) are loaded. The store records the format it holds (the
comment of its ``runs`` table); after a format change :meth:`ResultsStore.upgrade`
(called by :meth:`~ResultsStore.sync_study` and ``cx runs``) drops the result tables
and reloads them from the run folders of every study in the catalog.

>>> store = ResultsStore("runs/results.duckdb")                         # doctest: +SKIP
>>> store.query("select * from published_data_quality_summary")        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

from cxlib import config
from cxlib.pipeline.artifacts import (
    ARTIFACT_FORMAT,
    MANIFEST_FILE,
    RESERVED_TABLES,
    TABLES_DIR,
    damaged_artifacts,
    is_table_name,
)
from cxlib.pipeline.provenance import disk_full_error, is_disk_full, write_json_atomic
from cxlib.pipeline.publish import FALLBACK, POINTER_FILE, read_pointer, restore_pointer

__all__ = ["DAMAGED", "RUN_COLUMNS", "ResultsStore", "is_corrupt_database", "mark_damaged_runs"]

logger = logging.getLogger(__name__)

#: The status of a run whose artifacts were found damaged after it succeeded.
DAMAGED = "damaged"
#: Words of DuckDB's messages for a database file it cannot read.
_CORRUPT_WORDS = (
    "not a valid duckdb database file",
    "corrupt database file",
    "does not match stored checksum",
)


def is_corrupt_database(exc: BaseException) -> bool:
    """Whether a DuckDB error says the database file itself is unreadable."""
    text = str(exc).lower()
    return any(words in text for words in _CORRUPT_WORDS)


def _repaired(method):
    """Rebuild a corrupt store and call ``method`` again; name a full disk in its errors.

    Only the outermost call of a store method repairs (inner calls, which share its
    connection, pass their errors up to it).
    """

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        import duckdb

        state = self._calls
        if getattr(state, "active", False):
            return method(self, *args, **kwargs)
        state.active = True
        try:
            return method(self, *args, **kwargs)
        except duckdb.Error as exc:
            failure = exc
        finally:
            state.active = False
        if is_disk_full(failure):
            raise disk_full_error(self.path, failure, doing="update") from failure
        if not is_corrupt_database(failure) or self._rebuilding:
            raise failure
        self.rebuild(str(failure).splitlines()[0])
        state.active = True
        try:
            return method(self, *args, **kwargs)
        finally:
            state.active = False

    return call


#: The catalog's columns, in order.
RUN_COLUMNS = {
    "run_id": "VARCHAR PRIMARY KEY",
    "study": "VARCHAR",
    "pipeline": "VARCHAR",
    "notebook": "VARCHAR",
    "label": "VARCHAR",
    "slot": "VARCHAR",
    "status": "VARCHAR",
    "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
    "duration_s": "DOUBLE",
    "execution_s": "DOUBLE",
    "data_hash": "VARCHAR",
    "run_key": "VARCHAR",
    "code_version": "VARCHAR",
    "parameters": "VARCHAR",
    "diagnostics": "VARCHAR",
    "max_r_hat": "DOUBLE",
    "min_ess_bulk": "DOUBLE",
    "divergences": "BIGINT",
    "gate_failures": "VARCHAR",
    "error": "VARCHAR",
    "run_dir": "VARCHAR",
    "tables_loaded": "BOOLEAN",
    "reason": "VARCHAR",
}

#: The Parquet metadata key of a table's artifact format, and the catalog's comment.
_FORMAT_KEY = "cxlib.artifact_format"
_FORMAT_COMMENT = f"cxlib artifact format {ARTIFACT_FORMAT}"

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())
    + ")",
    "CREATE TABLE IF NOT EXISTS publications (publication_id VARCHAR PRIMARY KEY, study VARCHAR, "
    "published_at TIMESTAMP, pipeline VARCHAR, previous VARCHAR, runs VARCHAR)",
    "CREATE TABLE IF NOT EXISTS published_runs (study VARCHAR, slot VARCHAR, run_id VARCHAR, "
    "publication_id VARCHAR, published_at TIMESTAMP, PRIMARY KEY (study, slot))",
    "CREATE TABLE IF NOT EXISTS alert_rules (pipeline VARCHAR, name VARCHAR, rule VARCHAR, "
    "segments VARCHAR, waves VARCHAR, severity VARCHAR, message VARCHAR, "
    "declared_at TIMESTAMP, PRIMARY KEY (pipeline, name))",
    # a store made before runs could be not applicable gains the column of their reason
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS reason VARCHAR",
]


def _ts(text: str | None):
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ResultsStore:
    """The DuckDB results store (one file).

    Parameters
    ----------
    path : str or Path, optional
        The database file (default ``config.RESULTS_DB``); created on first write.
    wait_s : float
        DuckDB lets one process write a file at a time; how long to wait for
        another process (a second runner, an open notebook) to let go.
    runs_dir : str or Path, optional
        The runs directory a corrupt store is rebuilt from (default: the folder of
        the studies last synced, else the database file's folder).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        wait_s: float = 60.0,
        runs_dir: str | Path | None = None,
    ):
        self.path = Path(path or config.RESULTS_DB)
        self.wait_s = wait_s
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self._seen_root: Path | None = None
        self._rebuilding = False
        self._calls = threading.local()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    @contextmanager
    def connect(self, *, read_only: bool = False):
        """A connection, waiting while another process holds the file."""
        import duckdb

        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            if not read_only:
                for statement in _SCHEMA:
                    con.execute(statement)
            yield con
        finally:
            con.close()

    def rebuild(self, reason: str) -> Path:
        """Move an unreadable database file aside and rebuild the store from the run folders.

        The file (and its write-ahead log) becomes ``<name>.corrupt-<time>``, kept for
        inspection; every study folder of the runs directory is synced into a new one.

        Parameters
        ----------
        reason : str
            What DuckDB said (for the warning).

        Returns
        -------
        Path
            Where the unreadable file was moved.
        """
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        if self.path.exists():
            os.replace(self.path, aside)
        wal = self.path.with_name(self.path.name + ".wal")
        if wal.exists():
            os.replace(wal, aside.with_name(aside.name + ".wal"))
        root = self._runs_root()
        logger.warning(
            "results store %s was unreadable (%s): moved aside to %s and rebuilt from the "
            "run folders in %s",
            self.path,
            reason,
            aside.name,
            root,
        )
        self._rebuilding = True
        try:
            for study_dir in _study_dirs(root):
                self.sync_study(study_dir, repair=False)
        finally:
            self._rebuilding = False
        return aside

    def _runs_root(self) -> Path:
        return self.runs_dir or self._seen_root or self.path.parent

    # ------------------------------------------------------------ writing
    @_repaired
    def record_run(self, manifest: dict[str, Any], con=None) -> None:
        """Insert or update one run's catalog row from its manifest."""
        if con is None:
            with self.connect() as con:
                return self.record_run(manifest, con)
        diag = manifest.get("diagnostics") or {}
        timings = manifest.get("timings", {})
        error = manifest.get("error")
        row = {
            "run_id": manifest["run_id"],
            "study": manifest.get("study"),
            "pipeline": manifest.get("pipeline"),
            "notebook": manifest.get("notebook", {}).get("name"),
            "label": manifest.get("label"),
            "slot": manifest.get("slot"),
            "status": manifest.get("status"),
            "started_at": _ts(timings.get("started_at")),
            "finished_at": _ts(timings.get("finished_at")),
            "duration_s": timings.get("duration_s"),
            "execution_s": timings.get("execution_s"),
            "data_hash": (manifest.get("data") or {}).get("hash"),
            "run_key": manifest.get("key"),
            "code_version": (manifest.get("code") or {}).get("version"),
            "parameters": json.dumps(manifest.get("parameters", {}), default=str),
            "diagnostics": json.dumps(diag, default=str) if diag else None,
            "max_r_hat": _num(diag.get("max_r_hat")),
            "min_ess_bulk": _num(diag.get("min_ess_bulk")),
            "divergences": _int(diag.get("divergences")),
            "gate_failures": json.dumps(manifest.get("gate_failures") or []),
            "error": _error_text(error),
            "run_dir": manifest.get("run_dir"),
            "tables_loaded": False,
            "reason": manifest.get("reason"),
        }
        existing = con.execute(
            "SELECT tables_loaded FROM runs WHERE run_id = ?", [row["run_id"]]
        ).fetchone()
        if existing:
            row["tables_loaded"] = bool(existing[0])
            con.execute("DELETE FROM runs WHERE run_id = ?", [row["run_id"]])
        con.execute(
            f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )

    @_repaired
    def load_tables(self, run_id: str, study: str, output_dir: str | Path, con=None) -> list[str]:
        """Load a run's ``tables/*.parquet`` into the store (replacing that run's rows).

        A file that is not readable Parquet is left out, with a warning.

        Returns
        -------
        list of str
            The tables loaded.
        """
        if con is None:
            with self.connect() as con:
                return self.load_tables(run_id, study, output_dir, con)
        loaded = []
        for parquet in sorted((Path(output_dir) / TABLES_DIR).glob("*.parquet")):
            name = parquet.stem
            if not is_table_name(name):
                continue
            if not _readable_parquet(parquet):
                logger.warning("%s is not readable Parquet: not loaded into the store", parquet)
                continue
            if _table_format(con, parquet) != str(ARTIFACT_FORMAT):
                continue  # written in another artifact format
            columns = con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?)", [str(parquet)]
            ).fetchall()
            names = [c[0] for c in columns]
            select = "SELECT CAST(? AS VARCHAR) AS run_id"
            params: list[Any] = [run_id]
            if "study" not in names:
                select += ", CAST(? AS VARCHAR) AS study"
                params.append(study)
            select += ", * EXCLUDE (run_id)" if "run_id" in names else ", *"
            select += " FROM read_parquet(?)"
            params.append(str(parquet))
            table = _quote(name)
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_name = ?",
                [name],
            ).fetchone()[0]
            if not exists:
                con.execute(f"CREATE TABLE {table} AS {select} LIMIT 0", params)
                con.execute(
                    f"CREATE OR REPLACE VIEW {_quote('published_' + name)} AS SELECT t.* FROM "
                    f"{table} t JOIN published_runs p ON t.run_id = p.run_id"
                )
            have = {r[1]: r[2] for r in con.execute(f"PRAGMA table_info({table})").fetchall()}
            for col, dtype, *_ in columns:
                # a column created from an all-null one (older runs) gets its type
                if have.get(col) == '"NULL"' and dtype != '"NULL"':
                    con.execute(f"ALTER TABLE {table} ALTER {_quote(col)} TYPE {dtype}")
            for col, dtype, *_ in columns:
                if col not in have:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(col)} {dtype}")
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            con.execute(f"INSERT INTO {table} BY NAME {select}", params)
            loaded.append(name)
        con.execute("UPDATE runs SET tables_loaded = true WHERE run_id = ?", [run_id])
        return loaded

    @_repaired
    def set_published(self, study: str, pointer: dict[str, Any] | None, con=None) -> None:
        """Make ``published_runs`` mirror a study's pointer (one transaction)."""
        if con is None:
            with self.connect() as con:
                return self.set_published(study, pointer, con)
        if not pointer or not pointer.get("publication_id"):
            con.execute("DELETE FROM published_runs WHERE study = ?", [study])
            return
        pid = pointer["publication_id"]
        when = _ts(pointer.get("published_at"))
        con.execute("DELETE FROM published_runs WHERE study = ?", [study])
        for slot, entry in pointer.get("runs", {}).items():
            con.execute(
                "INSERT INTO published_runs VALUES (?, ?, ?, ?, ?)",
                [study, slot, entry["run_id"], pid, when],
            )
        if not con.execute("SELECT 1 FROM publications WHERE publication_id = ?", [pid]).fetchone():
            con.execute(
                "INSERT INTO publications VALUES (?, ?, ?, ?, ?, ?)",
                [
                    pid,
                    study,
                    when,
                    pointer.get("pipeline"),
                    pointer.get("previous"),
                    json.dumps(pointer.get("runs", {})),
                ],
            )

    @_repaired
    def set_alert_rules(self, pipeline: str, rules) -> None:
        """Store the alert rules a pipeline declares (replacing its earlier ones)."""
        from datetime import datetime

        now = datetime.now(UTC).replace(tzinfo=None)
        with self.connect() as con, _transaction(con):
            con.execute("DELETE FROM alert_rules WHERE pipeline = ?", [pipeline])
            for rule in rules:
                con.execute(
                    "INSERT INTO alert_rules VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        pipeline,
                        rule.name,
                        rule.rule,
                        json.dumps(rule.segments),
                        json.dumps(rule.waves),
                        rule.severity,
                        rule.message,
                        now,
                    ],
                )

    @_repaired
    def upgrade(self) -> bool:
        """Rebuild the result tables from the run folders if they hold another artifact format.

        A store built before the artifact format changed (``ARTIFACT_FORMAT``) has
        tables with the old columns: they are dropped, with their ``published_*``
        views, and every study the catalog knows is synced again from its run
        folders (only tables in the current format load).

        Returns
        -------
        bool
            Whether the store was rebuilt (False when it was current or new).
        """
        with self.connect() as con:
            found = con.execute(
                "SELECT comment FROM duckdb_tables() WHERE schema_name = 'main' "
                "AND table_name = 'runs'"
            ).fetchone()
            if found and found[0] == _FORMAT_COMMENT:
                return False
            kinds = con.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = 'main'"
            ).fetchall()
            tables = [n for n, kind in kinds if kind == "BASE TABLE" and n not in RESERVED_TABLES]
            views = [n for n, kind in kinds if kind == "VIEW" and n.startswith("published_")]
            loaded = con.execute("SELECT count(*) FROM runs WHERE tables_loaded").fetchone()[0]
            run_dirs = con.execute("SELECT DISTINCT run_dir FROM runs WHERE run_dir IS NOT NULL")
            study_dirs = sorted({Path(r[0]).parent for r in run_dirs.fetchall()})
            with _transaction(con):
                for view in views:
                    con.execute(f"DROP VIEW IF EXISTS {_quote(view)}")
                for table in tables:
                    con.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
                con.execute("UPDATE runs SET tables_loaded = false")
                con.execute(f"COMMENT ON TABLE runs IS '{_FORMAT_COMMENT}'")
        if not tables and not loaded:
            return False  # a new store: nothing was loaded in another format
        for study_dir in study_dirs:
            if study_dir.is_dir():
                self.sync_study(study_dir, repair=False)
        return True

    @_repaired
    def sync_study(self, study_dir: str | Path, *, repair: bool = True) -> None:
        """Bring a study's rows in line with its run folders and published pointer.

        Upserts every run's catalog row from its manifest, loads the tables of
        succeeded runs not loaded yet, and mirrors the pointer — in one
        transaction, so readers see the old state or the new one. A store in
        another artifact format is rebuilt first (:meth:`upgrade`).

        Parameters
        ----------
        study_dir : str or Path
            The study's folder in the runs directory.
        repair : bool
            Also repair the study folder first (the runner does, holding the study's
            lock): a damaged pointer is put back from its previous copy
            (:func:`~cxlib.pipeline.publish.restore_pointer`) and succeeded runs whose
            artifacts are damaged are marked so (:func:`mark_damaged_runs`). False
            only mirrors what is there (``cx runs``, a rebuild).
        """
        self.upgrade()
        study_dir = Path(study_dir)
        self._seen_root = study_dir.parent
        study = study_dir.name
        if repair:
            done = restore_pointer(study_dir)
            if done:
                logger.warning("%s; this refresh republishes the up-to-date runs", done)
            for line in mark_damaged_runs(study_dir):
                logger.warning("%s", line)
        manifests = [m for _, m in _read_manifests(study_dir)]
        pointer = read_pointer(study_dir)
        with self.connect() as con, _transaction(con):
            for manifest in manifests:
                self.record_run(manifest, con)
            loaded = {
                r[0]
                for r in con.execute(
                    "SELECT run_id FROM runs WHERE study = ? AND tables_loaded", [study]
                ).fetchall()
            }
            for manifest in manifests:
                if (
                    manifest.get("status") == "succeeded"
                    and not manifest.get("fast")  # smoke runs stay out of the history
                    and manifest["run_id"] not in loaded
                ):
                    self.load_tables(manifest["run_id"], study, manifest.get("output_dir", ""), con)
            self.set_published(study, pointer, con)

    @_repaired
    def catch_up(self, runs_dir: str | Path | None = None) -> list[str]:
        """Sync the studies whose run folders or pointer the catalog lags; return their names.

        A study lags when a run folder's status differs from its catalog row (or it
        has none), or its pointer's publication is not the one ``published_runs``
        mirrors — e.g. after a runner was killed right after switching the pointer.
        It only mirrors (``repair=False``), so it needs no study lock.

        Parameters
        ----------
        runs_dir : str or Path, optional
            Default: the store's runs directory (the database file's folder).
        """
        root = Path(runs_dir) if runs_dir is not None else self._runs_root()
        lagging = []
        for study_dir in _study_dirs(root):
            study = study_dir.name
            on_disk = {m["run_id"]: m.get("status") for _, m in _read_manifests(study_dir)}
            pointer = read_pointer(study_dir) or {}
            if FALLBACK in pointer:
                logger.warning("%s", pointer[FALLBACK]["message"])
            live = pointer.get("publication_id")
            with self.connect(read_only=self.exists()) as con:
                catalog = dict(
                    con.execute(
                        "SELECT run_id, status FROM runs WHERE study = ?", [study]
                    ).fetchall()
                )
                mirrored = {
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT publication_id FROM published_runs WHERE study = ?",
                        [study],
                    ).fetchall()
                }
            behind = any(catalog.get(run_id) != status for run_id, status in on_disk.items())
            if behind or mirrored != ({live} if live and pointer.get("runs") else set()):
                self.sync_study(study_dir, repair=False)
                lagging.append(study)
        return lagging

    # ------------------------------------------------------------ reading
    def exists(self) -> bool:
        """Whether the database file exists."""
        return self.path.is_file()

    @_repaired
    def runs(
        self, *, study: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Catalog rows, newest first, with a ``published`` flag."""
        if not self.exists():
            return []
        sql = (
            "SELECT r.*, p.run_id IS NOT NULL AS published FROM runs r "
            "LEFT JOIN published_runs p ON r.run_id = p.run_id WHERE true"
        )
        params: list[Any] = []
        if study:
            sql += " AND r.study = ?"
            params.append(study)
        if status:
            sql += " AND r.status = ?"
            params.append(status)
        sql += " ORDER BY r.started_at DESC NULLS LAST, r.run_id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.connect() as con:
            cur = con.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    @_repaired
    def find_run(self, run_id: str) -> dict[str, Any] | None:
        """One catalog row by id or unique id prefix (None when unknown).

        Raises
        ------
        ValueError
            When the prefix matches several runs.
        """
        if not self.exists():
            return None
        with self.connect() as con:
            cur = con.execute(
                "SELECT * FROM runs WHERE run_id = ? OR starts_with(run_id, ?) ORDER BY run_id",
                [run_id, run_id],
            )
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        exact = [r for r in rows if r["run_id"] == run_id]
        if exact:
            return exact[0]
        if len(rows) > 1:
            raise ValueError(
                f"{run_id!r} matches {len(rows)} runs: "
                + ", ".join(r["run_id"] for r in rows[:5])
                + (" ..." if len(rows) > 5 else "")
            )
        return rows[0] if rows else None

    @_repaired
    def query(self, sql: str, params: list[Any] | None = None):
        """Run SQL against the store; return a pandas DataFrame."""
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    @_repaired
    def tables(self) -> list[str]:
        """Result tables in the store (not the catalog tables or views)."""
        if not self.exists():
            return []
        with self.connect() as con:
            rows = con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_type = 'BASE TABLE' ORDER BY table_name"
            ).fetchall()
        return [r[0] for r in rows if r[0] not in RESERVED_TABLES]


@contextmanager
def _transaction(con):
    """A transaction that commits, or rolls back what it can and raises the first error.

    DuckDB ends a transaction itself when a write fails (a full disk); the ROLLBACK
    then fails with "cannot rollback - no transaction is active", which must not
    hide the error that matters.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001, S110 - the transaction is gone already
            pass
        raise
    con.execute("COMMIT")


def _study_dirs(root: Path) -> list[Path]:
    """The study folders of a runs directory (those holding a run folder or a pointer)."""
    if not root.is_dir():
        return []
    return [
        d
        for d in sorted(root.iterdir())
        if d.is_dir()
        and not d.is_symlink()
        and ((d / POINTER_FILE).exists() or any(d.glob(f"*/{MANIFEST_FILE}")))
    ]


def _read_manifests(study_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, manifest)`` of each run folder's readable manifest (others are skipped)."""
    out = []
    for path in sorted(study_dir.glob(f"*/{MANIFEST_FILE}")):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("%s is unreadable: its run is left out of the catalog", path)
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("run_id"), str):
            out.append((path, manifest))
    return out


def mark_damaged_runs(study_dir: str | Path) -> list[str]:
    """Mark the study's reusable or live runs whose artifacts are damaged; say what was found.

    Checked are the runs a refresh could take as up to date and the live ones: per
    run key the newest succeeded run (and, while it is damaged, the next newest), and
    every published run. A run whose output folder fails
    :func:`~cxlib.pipeline.artifacts.damaged_artifacts` gets status ``damaged`` in its
    manifest, with ``damage`` (``found_at``, ``files``, ``status_was``), so that its
    slot is re-run rather than reused. Call only while holding the study's lock.

    Returns
    -------
    list of str
        One line per run marked: the run, its slot and its damaged files.
    """
    study_dir = Path(study_dir)
    pointer = read_pointer(study_dir) or {}
    live = {e.get("run_id") for e in (pointer.get("runs") or {}).values()}
    by_key: dict[Any, list[tuple[Path, dict[str, Any]]]] = {}
    for path, manifest in _read_manifests(study_dir):
        if manifest.get("status") == "succeeded":
            by_key.setdefault(manifest.get("key"), []).append((path, manifest))
    lines = []
    for runs in by_key.values():
        runs.sort(key=lambda found: found[1]["run_id"], reverse=True)
        intact_found = False
        for path, manifest in runs:
            if intact_found and manifest["run_id"] not in live:
                continue
            output_dir = manifest.get("output_dir") or path.parent / "artifacts"
            problems = damaged_artifacts(output_dir, manifest.get("artifacts"))
            if not problems:
                intact_found = True
                continue
            manifest["damage"] = {
                "found_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": problems,
                "status_was": manifest.get("status"),
            }
            manifest["status"] = DAMAGED
            write_json_atomic(path, manifest)
            shown = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
            lines.append(
                f"run {manifest['run_id']} ({manifest.get('slot')}) has damaged artifacts in "
                f"{output_dir}: {shown}; marked damaged, its slot is re-run"
            )
    return lines


def _readable_parquet(path: Path) -> bool:
    """Whether a file is Parquet that can be read (its footer and schema)."""
    try:
        import pyarrow.parquet as pq

        pq.read_schema(path)
    except Exception:  # noqa: BLE001 - whatever fails, it cannot be loaded
        return False
    return True


def _table_format(con, parquet: Path) -> str | None:
    """The artifact format a run's Parquet table was written in (None: before formats)."""
    found = con.execute(
        "SELECT decode(value) FROM parquet_kv_metadata(?) WHERE decode(key) = ?",
        [str(parquet), _FORMAT_KEY],
    ).fetchone()
    return found[0] if found else None


def _num(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _error_text(error) -> str | None:
    if not error:
        return None
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()
    return str(error)
