"""The web dashboard's files, served as they are by ``http.dashboard``.

``static/`` holds plain ES modules, CSS and HTML: no build step. ``static/vendor/``
is written by ``make vendor`` from the npm lock file in ``tools/web/`` (uPlot), and
``static/slurmcast.js`` is a link to the project's JS client in ``clients/js/``,
so the page runs the very client the client tests check.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
