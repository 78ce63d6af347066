"""Log setup: structlog events, one line each; JSON in a cluster, readable on a terminal.

Libraries log through the standard ``logging`` module (the Kubernetes client reports a failing
kubeconfig ``exec`` plugin that way, urllib3 its connection warnings). Their records go through
the same renderer, so a JSON log stays one JSON object per line, whoever wrote the line.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

# The marker on the one handler we install on the root logger, so that configuring twice
# (tests, a second `main()`) replaces it instead of printing every line twice.
_HANDLER_NAME = "imagepuller"
_POOL_LOGGER = "urllib3.connectionpool"


class _NotPoolFull(logging.Filter):
    """Drops urllib3's "Connection pool is full, discarding connection": the Kubernetes
    client's pool keeps 5 connections per core for reuse, fewer than our threads (a watch per
    namespace, the workers, the Lease) use at once, so a connection coming back to a full pool
    is closed instead of kept. Nothing fails; the cost is a new connection later, not worth a
    warning line each time. urllib3's other warnings (retries, a broken connection) stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Connection pool is full")


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """``fmt`` is auto, json or console; auto means console on a terminal, JSON elsewhere."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # JSON gets the traceback as one string field, so it stays one line.
        structlog.processors.dict_tracebacks if fmt == "json" else structlog.dev.set_exc_info,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(shared, renderer, stream, level)


def _route_standard_logging(
    shared: list[structlog.typing.Processor],
    renderer: structlog.typing.Processor,
    stream: TextIO,
    level: str,
) -> None:
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    pool_logger = logging.getLogger(_POOL_LOGGER)
    if not any(isinstance(f, _NotPoolFull) for f in pool_logger.filters):
        pool_logger.addFilter(_NotPoolFull())
    # Libraries are quieter than we are: their warnings and errors, never their debug chatter.
    root.setLevel(max(logging.WARNING, getattr(logging, level.upper())))
