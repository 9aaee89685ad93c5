"""Render session event logs from session signal tables (the inverse of the signals).

:func:`render_events` turns each row of a session signal table (the shared interface of
:func:`cxlib.data.signals.compute_signals`, e.g. sessions simulated with a known truth)
into the events of that session, so that :func:`~cxlib.data.signals.compute_signals` on
the rendered log gives back the session's integer signals exactly (``rage_clicks``,
``dead_clicks``, ``quick_backs``, ``page_loops``, ``form_errors``, ``completed``) and its
durations approximately (``dwell_time_s``, ``time_to_complete_s`` and ``hesitation_s``
when the signals leave room for them; ``stillness_share`` roughly). Rendering is
vectorized numpy: 200,000 sessions of tens of events each take a few seconds.

A session is rendered as a sequence of blocks, each a fixed pattern of events that makes
one signal and nothing else (the pauses between them are chosen from the thresholds):

* start: a view of the touchpoint's first page (its "home");
* plain clicks (each followed by a scroll), enough that the median pause before an action
  is the session's hesitation;
* dead clicks (followed only by mouse moves for 1.5 x the dead-click window);
* rage clicks (a burst of clicks on one element, then a scroll);
* form errors (input, form submit, form error);
* quick backs (home -> second page -> back to home within the window, then a stay);
* page loops (after a pause, the home page viewed repeatedly within the window);
* mouse moves (and one still pause, for the stillness share) filling the time to the
  completion page (the touchpoint's last page) and to the exit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxlib.data.events import CLEAN_COLUMNS, EVENT_TYPES
from cxlib.data.signals import SignalThresholds

__all__ = ["render_events"]

_HOME, _SECOND, _DONE, _CURRENT = 0, 1, 2, 3
# block types, in the order they are rendered within a session
(
    _START,
    _START_LONG,
    _PLAIN,
    _DEAD,
    _RAGE,
    _FORM,
    _QUICK_BACK,
    _LOOP,
    _FILL_BEFORE,
    _COMPLETE,
    _FILL_AFTER,
    _EXIT,
) = range(12)
_N_BLOCKS = 12


def _templates(th: SignalThresholds):
    """Per block type: (offset constant, offset x hesitation, event, page role, element?)."""
    s = th.stillness_min_s
    move = 0.7 * s  # mouse moves this far apart leave no stillness
    gap = min(0.2, 0.05 * s, 0.1 * th.dead_click_window_s)
    code = {e: i for i, e in enumerate(EVENT_TYPES)}
    n_rage, n_loop = th.rage_click_min_clicks, th.page_loop_min_views
    rage_step = min(0.3, 0.5 * th.rage_click_window_s / (n_rage - 1))
    loop_step = min(2.0, 0.5 * th.page_loop_window_s / (n_loop - 1))
    stay = min(2.0, 0.5 * th.quick_back_window_s, 0.5 * s)
    loop_spacing = (th.page_loop_window_s + 1) / (n_loop - 1)
    k_quick = int(np.ceil(max(th.quick_back_window_s + 1, loop_spacing) / move))
    k_lead = int(np.ceil((th.page_loop_window_s + 1) / move))
    k_start = int(np.ceil(loop_spacing / move))
    dead = th.dead_click_window_s
    t: dict[int, list[tuple[float, float, str, int, bool]]] = {
        _START: [(0.0, 0, "page_view", _HOME, False), (gap, 0, "mouse_move", _HOME, False)],
        _START_LONG: [(0.0, 0, "page_view", _HOME, False)]
        + [(k * move, 0, "mouse_move", _HOME, False) for k in range(1, k_start + 1)],
        _PLAIN: [(0.0, 1, "click", _HOME, True), (gap, 1, "scroll", _HOME, False)],
        _DEAD: [
            (0.0, 1, "click", _HOME, True),
            (0.5 * dead, 1, "mouse_move", _HOME, False),
            (1.5 * dead, 1, "mouse_move", _HOME, False),
        ],
        _RAGE: [(j * rage_step, 1, "click", _HOME, True) for j in range(n_rage)]
        + [((n_rage - 1) * rage_step + gap, 1, "scroll", _HOME, False)],
        _FORM: [
            (0.0, 1, "input", _HOME, False),
            (0.0, 2, "form_submit", _HOME, False),
            (gap, 2, "form_error", _HOME, False),
        ],
        _QUICK_BACK: [
            (gap, 0, "page_view", _SECOND, False),
            (gap + stay, 0, "page_view", _HOME, False),
        ]
        + [(gap + stay + k * move, 0, "mouse_move", _HOME, False) for k in range(1, k_quick + 1)],
        _LOOP: [(k * move, 0, "mouse_move", _HOME, False) for k in range(1, k_lead + 1)]
        + [
            (k_lead * move + gap + j * loop_step, 0, "page_view", _HOME, False)
            for j in range(n_loop)
        ],
        _COMPLETE: [(gap, 0, "page_view", _DONE, False)],
        _EXIT: [(gap, 0, "exit", _CURRENT, False)],
    }
    out = {}
    for kind, rows in t.items():
        const, coef, event, role, element = zip(*rows, strict=True)
        out[kind] = (
            np.array(const),
            np.array(coef, dtype=float),
            np.array([code[e] for e in event], dtype=np.int8),
            np.array(role, dtype=np.int8),
            np.array(element, dtype=bool),
        )
    return out, move, gap


def _durations(sessions: pd.DataFrame, column: str) -> np.ndarray:
    """A duration column as floats (NaN where missing, or all NaN without the column)."""
    if column not in sessions:
        return np.full(len(sessions), np.nan)
    return pd.to_numeric(sessions[column], errors="coerce").to_numpy(dtype=float)


def _count(sessions: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(sessions[column], errors="coerce").fillna(0).to_numpy()
    if (values < 0).any() or (values % 1 != 0).any():
        raise ValueError(f"render_events: column {column!r} must hold counts (whole numbers >= 0)")
    return values.astype(np.int64)


def render_events(
    sessions: pd.DataFrame,
    pages: dict[str, list[str]],
    seed: int | None = None,
    *,
    thresholds: SignalThresholds | None = None,
    path: str | Path | None = None,
) -> pa.Table:
    """Render an event log whose signals are those of ``sessions``.

    Parameters
    ----------
    sessions : pandas.DataFrame
        One row per session with the columns of the signal table: ``session_id``,
        ``touchpoint``, ``start`` (UTC), the integer signals, ``completed``, and
        ``dwell_time_s``, ``hesitation_s``, ``stillness_share``, ``time_to_complete_s``
        (missing durations get defaults); ``respondent_id`` and ``segment`` are optional.
    pages : dict
        Touchpoint -> its pages; at least three distinct pages, the first the page a
        session starts on, the second the page quick backs leave it for, the **last the
        touchpoint's completion page** (``source.events.completion``).
    seed : int, optional
        Seeds the element names' order (the rendering is otherwise deterministic).
    thresholds : SignalThresholds, optional
        The thresholds the log is rendered for (default: the defaults).
    path : str or Path, optional
        Also write the log there as Parquet.

    Returns
    -------
    pyarrow.Table
        The cleaned event-log schema (:data:`cxlib.data.events.CLEAN_COLUMNS`, sorted by
        session and time), ready for :func:`cxlib.data.signals.compute_signals` or
        :func:`cxlib.data.events.load_events`.

    Raises
    ------
    ValueError
        When a session's touchpoint has no pages, or too few.
    """
    th = thresholds or SignalThresholds()
    templates, move, gap = _templates(th)
    n = len(sessions)
    tp_codes, tp_names = pd.factorize(sessions["touchpoint"].astype(str), sort=True)
    for tp in tp_names:
        listed = pages.get(tp)
        if not listed or len(dict.fromkeys(listed)) < 3:
            raise ValueError(
                f"render_events: touchpoint {tp!r} needs at least three distinct pages in "
                f"`pages` (start page, a second page, completion page last); got {listed!r}"
            )
    page_names = [p for tp in tp_names for p in (pages[tp][0], pages[tp][1], pages[tp][-1])]
    rage, dead = _count(sessions, "rage_clicks"), _count(sessions, "dead_clicks")
    quick, loops = _count(sessions, "quick_backs"), _count(sessions, "page_loops")
    forms = _count(sessions, "form_errors")
    completed = sessions["completed"].fillna(False).to_numpy(dtype=bool)
    hesitation = _durations(sessions, "hesitation_s")
    h_missing = np.isnan(hesitation)
    h = np.clip(np.nan_to_num(hesitation, nan=1.0), 0.05, None)
    # plain clicks: enough actions paused by h for their median to be h
    small = rage * (th.rage_click_min_clicks - 1)
    paused = dead + rage + 2 * forms
    plain = np.maximum(1, small + 2 - paused)
    plain = np.where(h_missing & (paused == 0), 0, plain)
    counts = np.zeros((n, _N_BLOCKS), dtype=np.int64)
    counts[:, _START] = quick == 0
    counts[:, _START_LONG] = quick > 0
    counts[:, _PLAIN], counts[:, _DEAD], counts[:, _RAGE] = plain, dead, rage
    counts[:, _FORM], counts[:, _QUICK_BACK], counts[:, _LOOP] = forms, quick, loops
    counts[:, _FILL_BEFORE] = 1
    counts[:, _COMPLETE] = completed
    counts[:, _FILL_AFTER] = 1
    counts[:, _EXIT] = 1
    # ---- block durations (a block lasts from the previous block's last event to its own)
    length = {k: float(v[0][-1]) for k, v in templates.items()}
    coef = {k: float(v[1][-1]) for k, v in templates.items()}
    structural = np.zeros(n)
    for kind in (_START, _START_LONG, _PLAIN, _DEAD, _RAGE, _FORM, _QUICK_BACK, _LOOP):
        structural += counts[:, kind] * (length[kind] + coef[kind] * h)
    dwell = np.nan_to_num(_durations(sessions, "dwell_time_s"))
    ttc = _durations(sessions, "time_to_complete_s")
    ttc = np.where(np.isnan(ttc), structural + gap, ttc)
    fill_before = np.where(completed, np.maximum(0.0, ttc - structural - gap), 0.0)
    done_at = structural + fill_before + np.where(completed, gap, 0.0)
    fill_after = np.maximum(0.0, dwell - done_at - gap)
    share = np.nan_to_num(_durations(sessions, "stillness_share"))
    n_paused = plain + dead + rage + 2 * forms
    still_made = np.where(h >= th.stillness_min_s, n_paused * h, 0.0)
    still_needed = np.maximum(0.0, share * np.maximum(dwell, done_at) - still_made)
    pause_before = np.minimum(still_needed, fill_before)
    pause_after = np.minimum(still_needed - pause_before, fill_after)
    pause_before = np.where(pause_before >= th.stillness_min_s, pause_before, 0.0)
    pause_after = np.where(pause_after >= th.stillness_min_s, pause_after, 0.0)
    # ---- blocks
    per_session = counts.sum(axis=1)
    block_session = np.repeat(np.arange(n), per_session)
    block_kind = np.repeat(np.tile(np.arange(_N_BLOCKS), n), counts.ravel())
    duration = np.zeros(len(block_kind))
    for kind in templates:
        mask = block_kind == kind
        duration[mask] = length[kind] + coef[kind] * h[block_session[mask]]
    for kind, fill in ((_FILL_BEFORE, fill_before), (_FILL_AFTER, fill_after)):
        mask = block_kind == kind
        duration[mask] = fill[block_session[mask]]
    first_block = np.concatenate([[0], np.cumsum(per_session)[:-1]])
    ends = np.cumsum(duration)
    begins = ends - duration
    begins -= begins[first_block][block_session]
    ordinal = np.arange(len(block_kind)) - first_block[block_session]
    # ---- how many events each block has, and where they go (blocks are in time order)
    fill_first, fill_count = {}, {}
    size = np.zeros(len(block_kind), dtype=np.int64)
    for kind, (const, *_) in templates.items():
        size[block_kind == kind] = len(const)
    for kind, fill, pause in (
        (_FILL_BEFORE, fill_before, pause_before),
        (_FILL_AFTER, fill_after, pause_after),
    ):
        blocks = np.flatnonzero(block_kind == kind)
        sess = block_session[blocks]
        first = np.where(pause[sess] > 0, 0, 1)
        last = np.floor(np.maximum(fill[sess] - pause[sess], 0.0) / move).astype(np.int64)
        last = np.where(fill[sess] > 0, last, first - 1)
        fill_first[kind], fill_count[kind] = first, np.maximum(last - first + 1, 0)
        size[blocks] = fill_count[kind]
    slot = np.cumsum(size) - size
    total = int(size.sum())
    sess = np.empty(total, dtype=np.int64)
    offset = np.empty(total)
    event = np.empty(total, dtype=np.int8)
    role = np.empty(total, dtype=np.int8)
    element = np.empty(total, dtype=np.int64)
    # ---- events of the fixed blocks
    for kind, (const, hcoef, kinds, roles, elements) in templates.items():
        blocks = np.flatnonzero(block_kind == kind)
        if not len(blocks):
            continue
        k = len(const)
        b = np.repeat(blocks, k)
        pos = np.tile(np.arange(k), len(blocks))
        at = slot[b] + pos
        sess[at] = block_session[b]
        offset[at] = begins[b] + const[pos] + hcoef[pos] * h[block_session[b]]
        event[at], role[at] = kinds[pos], roles[pos]
        element[at] = np.where(elements[pos], ordinal[b], -1)
    # ---- mouse moves filling the time (after one still pause)
    for kind, pause, page_role in (
        (_FILL_BEFORE, pause_before, _HOME),
        (_FILL_AFTER, pause_after, _CURRENT),
    ):
        blocks = np.flatnonzero(block_kind == kind)
        k = fill_count[kind]
        b = np.repeat(blocks, k)
        within = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
        at = slot[b] + within
        s = block_session[b]
        sess[at] = s
        offset[at] = begins[b] + pause[s] + (within + np.repeat(fill_first[kind], k)) * move
        event[at], role[at], element[at] = EVENT_TYPES.index("mouse_move"), page_role, -1
    # ---- columns
    role = np.where(role == _CURRENT, np.where(completed[sess], _DONE, _HOME), role)
    page_index = tp_codes[sess] * 3 + role
    start = pd.to_datetime(sessions["start"], utc=True).dt.tz_convert(None)
    start = start.to_numpy().astype("datetime64[us]").astype(np.int64)
    stamps = start[sess] + np.rint(offset * 1e6).astype(np.int64)
    rng = np.random.default_rng(seed)
    shift = rng.integers(0, 1000, size=n)
    has_element = element >= 0
    element_codes = np.where(has_element, element + shift[sess], 0)
    element_names = pa.array([f"e{i}" for i in range(int(element_codes.max(initial=0)) + 1)])
    indices = pa.array(sess.astype(np.int32))

    def dictionary(codes: np.ndarray | pa.Array, values, mask=None) -> pa.DictionaryArray:
        codes = (
            codes if isinstance(codes, pa.Array) else pa.array(codes.astype(np.int32), mask=mask)
        )
        return pa.DictionaryArray.from_arrays(codes, pa.array(values, pa.string()))

    def per_session(column: str) -> pa.Array:
        if column not in sessions:
            return pa.nulls(len(sess), pa.string())
        missing = sessions[column].isna().to_numpy()
        values = sessions[column].astype(str).where(~missing, "").tolist()
        return dictionary(sess, values, mask=missing[sess] if missing.any() else None)

    table = pa.table(
        {
            "session_id": dictionary(indices, sessions["session_id"].astype(str).tolist()),
            "respondent_id": per_session("respondent_id"),
            "segment": per_session("segment"),
            "timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "event": dictionary(event, list(EVENT_TYPES)),
            "page": dictionary(page_index, page_names),
            "element": pa.DictionaryArray.from_arrays(
                pa.array(element_codes.astype(np.int32), mask=~has_element), element_names
            ),
            "x": pa.nulls(len(sess), pa.float64()),
            "y": pa.nulls(len(sess), pa.float64()),
            "touchpoint": dictionary(tp_codes[sess], list(tp_names)),
            "file_row": pa.array(np.arange(1, len(sess) + 1)),
        }
    ).select(list(CLEAN_COLUMNS))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    return table
