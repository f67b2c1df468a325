"""The log line formats of `--log-format`: text for people, JSON for log pipelines. Called
by cli when it sets up logging.

A JSON line is one object: `time` (RFC 3339, UTC, milliseconds), `level`, `logger`,
`message`, `site` (the site the logging thread works for: site/observe.py's SITE, set by
the pipeline; else the only site the process runs; else absent), `thread`, and `error`
(the traceback) when an exception is logged.
"""

from __future__ import annotations

import datetime
import json
import logging

from reconciler.site import observe


class JsonFormatter(logging.Formatter):
    def __init__(self, *, default_site: str | None = None) -> None:
        super().__init__()
        self.default_site = default_site

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        site = observe.SITE.get() or self.default_site
        if site:
            line["site"] = site
        line["thread"] = record.threadName
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
