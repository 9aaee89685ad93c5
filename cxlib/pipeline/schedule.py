"""``cx schedule``: refresh a pipeline's studies on a cron schedule and when their data change.

The loop is a :class:`Scheduler` whose :meth:`Scheduler.tick` does one check at a
given time — which makes it testable with fake clocks — and
:meth:`Scheduler.run_forever` calls it every ``poll_s`` seconds.

Rules:

- **cron**: when a scheduled time has passed, every study of the pipeline is
  refreshed. If the scheduler was down over several scheduled times, the missed
  refresh is caught up once, not once per missed time.
- **data**: when a study's data source changes (a new file matches the glob, or a
  file's size or modification time changes), that study is refreshed.
- **no overlap**: a study is never refreshed twice at once. A trigger that
  arrives while the study runs is kept and served once after it finished; a
  study locked by another runner (e.g. a manual ``cx run``) is retried on the
  next tick.
- Refreshes go through :func:`~cxlib.pipeline.runner.run_pipeline`, so what is
  up to date is skipped and only finished, gated-ok runs are published.
- **changed mid-refresh**: a refresh that did not publish because its data (or
  study spec, or a side table) changed while it ran is followed at once by a
  refresh of the new version.

Its state (last cron time served, data fingerprints) is kept in
``RUNS_DIR/.schedule/<pipeline>.json`` so that a restart knows what it missed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cxlib.errors import CxError
from cxlib.pipeline.errors import StudyBusyError
from cxlib.pipeline.plan import plan_runs, resolve_data
from cxlib.pipeline.provenance import write_json_atomic
from cxlib.pipeline.spec import PipelineSpec, load_pipeline

__all__ = ["Scheduler", "Trigger"]

logger = logging.getLogger("cxlib.pipeline.schedule")


@dataclass(frozen=True)
class Trigger:
    """Why a study is refreshed: ``cron``, ``data`` or ``start``, with details."""

    study: str
    reason: str
    detail: str = ""


class Scheduler:
    """Triggers a pipeline's refreshes: cron schedule and data-source changes.

    Parameters
    ----------
    pipeline : str, Path or PipelineSpec
        The pipeline; it needs a ``schedule:`` section.
    state_path : str or Path, optional
        Where the scheduler remembers what it served (default
        ``<runs_dir>/.schedule/<pipeline>.json``).
    launch : callable, optional
        ``launch(study, trigger) -> handle`` starting a refresh and returning
        something with ``done()`` (a Future). Default: a thread calling
        :func:`~cxlib.pipeline.runner.run_pipeline` for the study.
    run_options : dict, optional
        Keyword arguments for ``run_pipeline`` (``jobs``, ``executor``,
        ``scheduler``, ``runs_dir``, ``results_db`` ...).
    """

    def __init__(
        self,
        pipeline: str | Path | PipelineSpec,
        *,
        state_path: str | Path | None = None,
        launch: Callable[[str, Trigger], Any] | None = None,
        run_options: dict[str, Any] | None = None,
    ):
        self.spec = pipeline if isinstance(pipeline, PipelineSpec) else load_pipeline(pipeline)
        if self.spec.schedule is None:
            raise CxError(
                f"{self.spec.source}: the pipeline has no `schedule:` section; add "
                "`schedule: {cron: '0 6 * * 1'}` and/or `watch_data: true`, or run it with `cx run`"
            )
        self.schedule = self.spec.schedule
        self.tz = ZoneInfo(self.schedule.timezone)
        self.run_options = dict(run_options or {})
        runs_dir = self.run_options.get("runs_dir")
        tasks = plan_runs(self.spec, runs_dir=runs_dir)  # every input checked before the loop
        self.runs_dir = Path(tasks[0].runs_dir) if tasks else self.spec.runs_path
        self.sources: dict[str, Path] = {}
        #: Side files runs read (cost tables, ...): a change triggers a refresh as data does.
        self.side_files: dict[str, set[Path]] = {}
        for task in tasks:
            self.sources.setdefault(task.study, self._source_pattern(task))
            self.side_files.setdefault(task.study, set()).update(
                Path(f["path"]) for f in task.side_files.values()
            )
        self.state_path = Path(state_path or self.runs_dir / ".schedule" / f"{self.spec.name}.json")
        self.state = self._load_state()
        self._launch = launch or self._launch_thread
        self._pool: ThreadPoolExecutor | None = None
        self.running: dict[str, Any] = {}
        self.pending: dict[str, Trigger] = {}
        self.history: list[Trigger] = []

    # ------------------------------------------------------------------ state
    def _source_pattern(self, task) -> Path:
        for entry in self.spec.studies:
            if entry.data is not None and self.spec.resolve(entry.spec) == Path(task.study_path):
                return self.spec.resolve(entry.data)
        return Path(task.data_source or task.data_path)

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            state = {}
        state.setdefault("last_cron", None)
        state.setdefault("data", {})
        return state

    def _save_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_path, self.state)

    def data_fingerprint(self, study: str) -> list[list[Any]]:
        """What identifies a study's data now: matching files with size and mtime.

        The side files its runs read (cost tables, ...) come after the data files;
        with no data file the fingerprint is empty (nothing to run on).
        """
        data = [_file_stamp(p) for p in resolve_data(self.sources[study])]
        if not data:
            return []
        side = [_file_stamp(p) for p in sorted(self.side_files.get(study, ())) if p.is_file()]
        return data + side

    # ------------------------------------------------------------------ one check
    def _aware(self, now: datetime | None) -> datetime:
        if now is None:
            now = datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.astimezone(self.tz)

    def due(self, now: datetime | None = None) -> list[Trigger]:
        """What is due at ``now`` (and record it as served); runs nothing."""
        now = self._aware(now)
        triggers: list[Trigger] = []
        if self.schedule.cron:
            from croniter import croniter

            last = self.state.get("last_cron")
            if last is None:
                self.state["last_cron"] = now.isoformat()  # first start: no history to catch up
            else:
                last_dt = datetime.fromisoformat(last).astimezone(self.tz)
                fires = croniter(self.schedule.cron, last_dt)
                nxt = fires.get_next(datetime)
                if nxt <= now:
                    latest = croniter(self.schedule.cron, now + timedelta(seconds=1)).get_prev(
                        datetime
                    )
                    missed = _count_fires(self.schedule.cron, last_dt, latest)
                    detail = f"scheduled {latest:%Y-%m-%d %H:%M %Z}"
                    if missed > 1:
                        detail += f" (caught up once for {missed} missed times since {nxt:%Y-%m-%d %H:%M})"
                    triggers += [Trigger(s, "cron", detail) for s in self.sources]
                    self.state["last_cron"] = latest.isoformat()
        if self.schedule.watch_data:
            for study in self.sources:
                fingerprint = self.data_fingerprint(study)
                seen = self.state["data"].get(study)
                if fingerprint != seen:
                    reason = "start" if seen is None else "data"
                    detail = (
                        "first check of the data"
                        if seen is None
                        else _what_changed(seen, fingerprint)
                    )
                    if not fingerprint:
                        detail = "the data source matches no file now"
                    self.state["data"][study] = fingerprint
                    if fingerprint:
                        triggers.append(Trigger(study, reason, detail))
        return triggers

    def tick(self, now: datetime | None = None) -> list[Trigger]:
        """One check at ``now``: start the refreshes that are due and may start.

        Returns
        -------
        list of Trigger
            The refreshes started by this tick.
        """
        for study, handle in list(self.running.items()):
            if handle.done():
                del self.running[study]
                busy = _busy(handle)
                if busy:
                    logger.warning("%s: %s; retrying on the next check", study, busy)
                    self.pending.setdefault(study, Trigger(study, "retry", busy))
                changed = _changed_meanwhile(handle, study)
                if changed:
                    logger.warning("%s: %s; refreshing the new version", study, changed)
                    self.pending.setdefault(study, Trigger(study, "data", changed))
        for trigger in self.due(now):
            if trigger.study not in self.pending:
                self.pending[trigger.study] = trigger
        started = []
        for study, trigger in list(self.pending.items()):
            if study in self.running:
                continue  # no overlapping runs of one study: served after it finishes
            del self.pending[study]
            logger.info("refreshing %s (%s: %s)", study, trigger.reason, trigger.detail)
            self.running[study] = self._launch(study, trigger)
            self.history.append(trigger)
            started.append(trigger)
        self._save_state()
        return started

    # ------------------------------------------------------------------ the loop
    def run_forever(
        self,
        *,
        poll_s: float | None = None,
        stop: threading.Event | None = None,
        max_ticks: int | None = None,
    ) -> None:
        """Check every ``poll_s`` seconds (default: the spec's) until ``stop`` is set."""
        interval = poll_s if poll_s is not None else self.schedule.poll_s
        stop = stop or threading.Event()
        ticks = 0
        logger.info(
            "scheduling %s: cron %s (%s), watching data: %s, every %g s",
            self.spec.name,
            self.schedule.cron or "none",
            self.schedule.timezone,
            "yes" if self.schedule.watch_data else "no",
            interval,
        )
        try:
            while not stop.is_set():
                self.tick()
                ticks += 1
                if max_ticks is not None and ticks >= max_ticks:
                    break
                stop.wait(interval)
        finally:
            self.wait()

    def wait(self) -> None:
        """Wait for the refreshes that are running to finish."""
        for handle in list(self.running.values()):
            if isinstance(handle, Future):
                handle.exception()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _launch_thread(self, study: str, trigger: Trigger) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=max(len(self.sources), 1), thread_name_prefix="cx-schedule"
            )
        return self._pool.submit(self._refresh, study, trigger)

    def _refresh(self, study: str, trigger: Trigger):
        from cxlib.pipeline.runner import run_pipeline

        options = {"progress": False, **self.run_options}
        started = time.perf_counter()
        try:
            result = run_pipeline(self.spec, study=study, **options)
        except StudyBusyError as exc:
            return exc
        except CxError as exc:  # bad input, e.g. data that do not read: said, no traceback
            logger.error("refreshing %s refused: %s", study, exc)
            raise
        except Exception:
            logger.exception("refreshing %s failed", study)
            raise
        counts = ", ".join(f"{n} {s}" for s, n in result.counts().items())
        log = logger.info if result.ok else logger.error
        log("%s refreshed in %.1f s: %s", study, time.perf_counter() - started, counts)
        return result


def _busy(handle) -> str | None:
    if isinstance(handle, Future) and not handle.cancelled() and handle.exception() is None:
        value = handle.result()
        if isinstance(value, StudyBusyError):
            return str(value).split(";")[0]
    return None


def _changed_meanwhile(handle, study: str) -> str | None:
    """What changed during a finished refresh of ``study`` that kept it from publishing."""
    if isinstance(handle, Future) and not handle.cancelled() and handle.exception() is None:
        changed = getattr(handle.result(), "inputs_changed", {}).get(study)
        if changed:
            return "changed during the last refresh: " + "; ".join(changed)
    return None


def _count_fires(cron: str, after: datetime, until: datetime, cap: int = 1000) -> int:
    from croniter import croniter

    fires = croniter(cron, after)
    n = 0
    while n < cap and fires.get_next(datetime) <= until:
        n += 1
    return n


def _what_changed(before: list, after: list) -> str:
    old = {f[0]: f for f in before}
    new = {f[0]: f for f in after}
    added = [Path(p).name for p in new if p not in old]
    changed = [Path(p).name for p in new if p in old and new[p] != old[p]]
    removed = [Path(p).name for p in old if p not in new]
    parts = []
    if added:
        parts.append("new " + ", ".join(added))
    if changed:
        parts.append("changed " + ", ".join(changed))
    if removed:
        parts.append("removed " + ", ".join(removed))
    return "; ".join(parts) or "data changed"


def _file_stamp(path: Path) -> list[Any]:
    """A file's path, size and modification time (one ``stat``)."""
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]
