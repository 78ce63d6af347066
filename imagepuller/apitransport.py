"""How a request to the Kubernetes API goes out and comes back, whatever it asks for.

:class:`ApiTransport` sends one request with a plain JSON body (the client supplies the server,
TLS and credentials), asks the write guard before any write, retries transient failures through
the one policy (tenacity: exponential backoff, bounded in time, cut short by a stop), turns
every failure into an :mod:`imagepuller.apierrors` error, tells ``on_request`` of every
answer, and streams a watch's events so that :meth:`ApiTransport.interrupt` can end them all.
What is asked (which paths, verbs and bodies) is :class:`imagepuller.kube.Kube`'s business.

Request bodies are sent as the JSON we built, not through the client's generated models: those
validate on the client side (and refuse, say, a misspelt AFFINITY field before the request is
made), which would hide the API server's own validation, the one that decides what a cluster
accepts and whose message an administrator can act on.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
import tenacity
import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.watch.watch import iter_resp_lines

from imagepuller.apierrors import (
    KubeError,
    NotLeader,
    Stopped,
    Transient,
    error_from_api_exception,
    error_from_response,
    error_from_status,
)

# The name the API client's log lines have always carried, whichever module writes them.
log = structlog.get_logger("imagepuller.kube")

CALL_TIMEOUT = (10.0, 30.0)  # connect, read (seconds) for ordinary calls

# Methods that change something: each waits for the write guard's word (reads never do).
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# api_client -> the guard of every write made through it (see guard_writes).
_write_guards: weakref.WeakKeyDictionary[Any, Callable[[], str | None]] = (
    weakref.WeakKeyDictionary()
)


def guard_writes(api_client: Any, refusal: Callable[[], str | None]) -> None:
    """From now on, every write of every :class:`ApiTransport` on ``api_client`` (made before
    or after this call, except those made with ``write_guard=False``) first asks ``refusal``:
    None lets it go; a reason refuses it, raising :class:`NotLeader` before anything is sent.

    The operator installs its leader elector's check here, once, on the API client every one of
    its clients shares (one per resource's puller included): a replica that has lost its Lease,
    or cannot know it still holds it (a pause past the renew deadline), sends no write at all,
    instead of finding out at its next renewal after a burst of them."""
    _write_guards[api_client] = refusal


def load_api_client(kubeconfig: str | None) -> k8s.ApiClient:
    """KUBECONFIG, then ~/.kube/config, then the in-cluster service account."""
    configuration = k8s.Configuration()
    # Our tenacity policy is the one retry policy. urllib3's own hidden retries would repeat
    # every connect timeout behind its back (and could hold a shutdown past its grace period).
    configuration.retries = False
    candidates = [kubeconfig] if kubeconfig else [str(Path.home() / ".kube" / "config")]
    for path in candidates:
        # KUBECONFIG may list several files separated by ':' (kubectl merges them).
        if any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p):
            try:
                k8s_config.load_kube_config(config_file=path, client_configuration=configuration)
            except (
                ConfigException,
                OSError,
                ValueError,
                TypeError,
                KeyError,
                yaml.YAMLError,
            ) as err:
                # A malformed file must read as a message, not as a traceback.
                raise KubeError(f"cannot load kubeconfig {path}: {err}") from None
            return k8s.ApiClient(configuration)
        if kubeconfig:
            raise KubeError(f"KUBECONFIG={kubeconfig!r}: not a readable file")
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException as err:
        raise KubeError(
            "no Kubernetes credentials: set KUBECONFIG, create ~/.kube/config, "
            f"or run in a pod with a service account ({err})"
        ) from None
    return k8s.ApiClient(configuration)


class _StopWhenSet(tenacity.stop.stop_base):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.event.is_set()


class _StopAtDeadline(tenacity.stop.stop_base):
    def __init__(self, clock: Callable[[], float], deadline: float):
        self.clock = clock
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() >= self.deadline


class ApiTransport:
    """Requests sent, guarded, retried, counted and mapped to our errors; watches streamed
    and interruptible. Subclassed by :class:`imagepuller.kube.Kube`, which names the calls."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        stop: threading.Event | None = None,
        retry_for: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        call_timeout: tuple[float, float] = CALL_TIMEOUT,
        write_guard: bool = True,
    ):
        self.api_client = api_client
        # False only for the client that renews the Lease the guard judges by (guard_writes):
        # its own writes are what keeps the Lease held.
        self.write_guard = write_guard
        self.stop = stop or threading.Event()
        self.clock = clock
        # (connect, read) seconds of an ordinary call; leader election wants short ones, so a
        # renewal cannot hang past the lease it renews.
        self.call_timeout = call_timeout
        self._streams: set[Any] = set()
        self._streams_lock = threading.Lock()
        # Told of every request that got an answer or failed (verb, resource, HTTP code or
        # "error", seconds): the metrics count them, the liveness check takes them as progress.
        self.on_request: Callable[[str, str, str, float], None] | None = None
        # The one retry policy: exponential backoff for transient failures, bounded in time,
        # and cut short when the puller is asked to stop.
        self._stop_retrying = tenacity.stop_any(
            tenacity.stop_after_delay(retry_for), _StopWhenSet(self.stop)
        )
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            stop=self._stop_retrying,
            sleep=self._pause,
            before_sleep=_log_retry,
            reraise=True,
        )

    def _pause(self, seconds: float) -> None:
        """The retry backoff: a wait that a stop cuts short."""
        self.stop.wait(seconds)

    # --- watching -----------------------------------------------------------------------

    def interrupt(self) -> None:
        """Unblock every watch in progress (called from another thread on shutdown)."""
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            with contextlib.suppress(OSError, ValueError):  # already closed
                stream.shutdown()

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()

    def _stream_events(
        self, response: Any, resource: str, namespace: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._streams_lock:
            self._streams.add(response)
        try:
            # A stop that arrived between the check and the registration must not be missed.
            self._check_stop()
            for line in iter_resp_lines(response):
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    # A line cut short: the stream was interrupted mid-event (a stop, or a
                    # connection that broke); never a traceback in the informer's thread.
                    self._check_stop()
                    raise Transient(
                        f"watch of {resource} in {namespace} broke: an event cut short"
                    ) from None
                if event.get("type") == "ERROR":
                    raise error_from_status(event.get("object") or {}, "watch", resource, namespace)
                yield event["type"], event["object"]
        except (urllib3.exceptions.HTTPError, OSError) as err:
            self._check_stop()  # an interrupted stream is a stop, not an error
            raise Transient(f"watch of {resource} in {namespace} broke: {err}") from None
        finally:
            with self._streams_lock:
                self._streams.discard(response)
            # Close, not just release: a connection still carrying an unfinished watch must
            # not go back to the pool, or the next call on it waits for the watch to end.
            response.close()
            response.release_conn()
        self._check_stop()

    # --- plumbing -----------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        _preload_content: bool = False,
        _request_timeout: tuple[float, float] = CALL_TIMEOUT,
    ) -> Any:
        """One request with a plain JSON body; the raw urllib3 response, as the generated
        methods return it with ``_preload_content=False``. The client still supplies the
        server address, TLS and credentials (refreshing tokens); only the models are skipped.
        A write the guard refuses raises NotLeader here, the last moment before it would leave.
        """
        if method in _MUTATING:
            self._check_write_allowed(method, path)
        method, url, headers, payload, post_params = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method, url, headers, payload, post_params, _request_timeout=_request_timeout
        )
        return response.response

    def _check_write_allowed(self, method: str, path: str) -> None:
        guard = _write_guards.get(self.api_client) if self.write_guard else None
        refusal = guard() if guard is not None else None
        if refusal is None:
            return
        log.warning("write_refused", method=method, path=path, reason=refusal)
        raise NotLeader(f"{method} {path} not sent: {refusal}")

    def _call(
        self,
        verb: str,
        resource: str,
        namespace: str,
        func: Callable[..., Any],
        *args: Any,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """One call through the retry policy; a ``deadline`` (a ``clock`` time) also ends the
        retries, so a wait bounded by it is not held past it by a call inside."""
        retrying = self._retrying
        if deadline is not None:
            retrying = retrying.copy(
                stop=tenacity.stop_any(self._stop_retrying, _StopAtDeadline(self.clock, deadline))
            )
        response = retrying(self._call_raw, verb, resource, namespace, func, *args, **kwargs)
        try:
            answer: dict[str, Any] = json.loads(response.data or b"{}")
            return answer
        finally:
            response.release_conn()

    def _call_raw(
        self,
        verb: str,
        resource: str,
        namespace: str,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        kwargs.setdefault("_request_timeout", self.call_timeout)
        started = time.monotonic()
        try:
            response = func(*args, _preload_content=False, **kwargs)
        except ApiException as err:
            self._told(verb, resource, str(err.status or "error"), started)
            raise error_from_api_exception(err, verb, resource, namespace) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            self._told(verb, resource, "error", started)
            raise Transient(f"cannot reach the API server to {verb} {resource}: {err}") from None
        self._told(verb, resource, str(response.status), started)
        if not 200 <= response.status <= 299:
            body = response.data
            response.release_conn()
            raise error_from_response(
                response.status, response.reason, body, verb, resource, namespace
            )
        return response

    def _told(self, verb: str, resource: str, code: str, started: float) -> None:
        if self.on_request is not None:
            self.on_request(verb, resource, code, time.monotonic() - started)


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "api_retry",
        attempt=state.attempt_number,
        wait_seconds=round(state.upcoming_sleep, 2),
        error=str(error),
    )
