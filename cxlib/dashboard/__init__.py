"""Executive dashboards: widget classes over published results (served by Voila).

The notebooks in ``dashboards/`` are thin: they create one of these and display it.
Everything here works without Voila (the tests drive the widgets directly).

>>> from cxlib.dashboard import OverviewDashboard          # doctest: +SKIP
>>> OverviewDashboard.from_runs()                          # doctest: +SKIP
"""

from __future__ import annotations

from cxlib.dashboard.dashboards import (
    DriversDashboard,
    OverviewDashboard,
    SegmentsDashboard,
    WhatIfDashboard,
)
from cxlib.dashboard.digital import DigitalDashboard
from cxlib.dashboard.journey import JourneyDashboard
from cxlib.dashboard.results import (
    PublishedResults,
    StudyNotPublishedError,
    load_published,
    published_studies,
    requested_study,
    suppress_small_cells,
)
from cxlib.dashboard.widgets import ChartView, Dashboard, query_string

__all__ = [
    "ChartView",
    "Dashboard",
    "DigitalDashboard",
    "DriversDashboard",
    "JourneyDashboard",
    "OverviewDashboard",
    "PublishedResults",
    "SegmentsDashboard",
    "StudyNotPublishedError",
    "WhatIfDashboard",
    "load_published",
    "published_studies",
    "query_string",
    "requested_study",
    "suppress_small_cells",
]
