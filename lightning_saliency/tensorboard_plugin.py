"""A "Saliency" tab for ``tensorboard --logdir``: the HTML report of every run under the logdir.

Registered through the ``tensorboard_plugins`` entry point, so installing lightning-saliency is
enough. The tab lists the runs that hold ``saliency/epoch_*.json`` and shows the same page as
``lightning-saliency report`` for the chosen one, built on request from the files on disk (a
running training's newest epoch shows up on reload).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from tensorboard.plugins import base_plugin
from werkzeug import Response, exceptions, wrappers

PLUGIN_NAME = "saliency"
# What TensorBoard asks of every plugin response ("In 3.0, this warning will become an error").
# The report is built with its own stricter policy in a <meta> tag (one hashed inline script).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:",
}


def _response(body: str, content_type: str) -> Response:
    return Response(body, content_type=content_type, headers=SECURITY_HEADERS)


class SaliencyPlugin(base_plugin.TBPlugin):
    """TensorBoard plugin serving the saliency report of the runs under ``--logdir``."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._logdir = Path(context.logdir) if getattr(context, "logdir", None) else None

    def _runs(self) -> dict[str, Any]:
        """Training runs by name (a resumed fit's log directories joined into one)."""
        from lightning_saliency.report.reading import read_runs

        if self._logdir is None or not self._logdir.is_dir():
            return {}
        return {run.name: run for run in read_runs(self._logdir)}

    def is_active(self) -> bool:
        return bool(self._runs())

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Saliency", disable_reload=False)

    def get_plugin_apps(self) -> dict[str, Any]:
        return {"/index.js": self._serve_js, "/runs": self._serve_runs, "/report": self._serve_report}

    @wrappers.Request.application
    def _serve_js(self, request: wrappers.Request) -> Response:
        script = resources.files("lightning_saliency.report").joinpath("static", "tensorboard_tab.js").read_text()
        return _response(script, "application/javascript")

    @wrappers.Request.application
    def _serve_runs(self, request: wrappers.Request) -> Response:
        return _response(json.dumps(sorted(self._runs())), "application/json")

    @wrappers.Request.application
    def _serve_report(self, request: wrappers.Request) -> Response:
        from lightning_saliency.report import build_report

        name = request.args.get("run")
        runs = self._runs()
        if name not in runs:  # only runs found under the logdir: no path from the request is opened
            raise exceptions.BadRequest(f"Unknown run {name!r}.")
        page = build_report([runs[name]], title=f"Saliency: {name}")
        return _response(page, "text/html; charset=utf-8")
