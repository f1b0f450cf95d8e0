"""The report page: one HTML document with plotly's JavaScript, the data and the drawing code.

Store text never reaches the HTML unescaped: the title is ``html.escape``d, and the data sits
in a ``<script type="application/json">`` element, :func:`script_safe` so no string in it can
close that element; the page's script reads it with ``JSON.parse`` and writes every string
with ``textContent``.
"""

from __future__ import annotations

import functools
import html
from importlib import resources

from remotetune.report._payload import script_safe

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="remotetune">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{css}</style>
{plotly}
</head>
<body>
<header><h1 id="title">{title}</h1>
<div class="sub">{subtitle}</div><div id="live-status"></div></header>
<main id="report"{live}>
<section><h2>Summary</h2><div id="summary" class="summary"></div></section>
<div class="grid">
<section><h2>Optimization history</h2><div id="fig-history"></div></section>
<section><h2>Intermediate results</h2><div id="fig-curves"></div></section>
</div>
<section><h2>Parameters against the final</h2><div id="fig-parallel"></div></section>
<div class="grid">
<section><h2>Parameter importance</h2><div id="fig-importance"></div>
<p id="importance-note" class="note"></p></section>
<section><h2>Per-GPU timeline</h2><div id="fig-timeline"></div></section>
</div>
<section><h2>Trials</h2><p class="note">Click a column to sort.</p>
<div class="scroll"><table id="trials-table"></table></div></section>
<section><h2>Hosts</h2><div class="scroll"><table id="hosts-table"></table></div>
<h2>Machines</h2><pre id="machines"></pre></section>
<section><h2>Configuration</h2><pre id="config"></pre></section>
<section><h2>Events</h2><div class="scroll"><table id="events-table"></table></div></section>
</main>
<script type="application/json" id="report-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""


def csp(live: bool) -> str:
    """The page's Content-Security-Policy: its own inline scripts and styles, plotly.js,
    and no network at all, except polling its own server when live.

    plotly's WebGL plots (parallel coordinates, scattergl) compile code at run time, hence
    ``'unsafe-eval'``; without it they show "WebGL is not supported" instead.
    """
    scripts = "'self' 'unsafe-inline' 'unsafe-eval'" if live else \
        "'unsafe-inline' 'unsafe-eval'"
    connect = "'self'" if live else "'none'"
    return (f"default-src 'none'; script-src {scripts}; "
            "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
            f"connect-src {connect}; worker-src blob:; base-uri 'none'; form-action 'none'")


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as shipped with the installed plotly package (no network)."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _asset(name: str) -> str:
    return resources.files("remotetune.report").joinpath("assets").joinpath(name).read_text("utf-8")


def render_page(
    payload: str,
    *,
    title: str,
    subtitle: str = "",
    live_url: str | None = None,
    live_interval_ms: int = 2000,
    plotly_src: str | None = None,
) -> str:
    """The HTML page for a payload from :func:`build_payload`.

    With ``plotly_src`` the page loads plotly.js from that URL (the live server); without,
    plotly.js is embedded once, so the file works offline. With ``live_url`` the page polls
    that URL for a new payload every ``live_interval_ms``.
    """
    if plotly_src is None:
        plotly = f"<script>{plotly_js()}</script>"
    else:
        plotly = f'<script src="{html.escape(plotly_src, quote=True)}"></script>'
    live = ""
    if live_url is not None:
        live = (f' data-live-url="{html.escape(live_url, quote=True)}"'
                f' data-live-interval="{int(live_interval_ms)}"')
    return _TEMPLATE.format(
        csp=html.escape(csp(live=live_url is not None), quote=True),
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        css=_asset("report.css"),
        plotly=plotly,
        live=live,
        data=script_safe(payload),
        js=_asset("report.js"),
    )
