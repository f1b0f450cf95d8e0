"""HTML reports of an experiment: a self-contained file and a live, read-only web page.

``render_report(store, exp_id)`` reads the store (only reads) and returns the page;
:class:`ReportServer` serves the same page live (``remotetune serve``).
"""

from __future__ import annotations

from remotetune.report._data import ReportData, load_report_data
from remotetune.report._importance import Importance, parameter_importance
from remotetune.report._page import render_page
from remotetune.report._payload import build_payload, script_safe
from remotetune.report._render import render_report, report_title
from remotetune.report._server import ReportServer, ServeOptions

__all__ = [
    "Importance",
    "ReportData",
    "ReportServer",
    "ServeOptions",
    "build_payload",
    "load_report_data",
    "parameter_importance",
    "render_page",
    "render_report",
    "report_title",
    "script_safe",
]
