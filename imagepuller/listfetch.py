"""Fetching one image list over http(s), for `imagelists.read_source`.

A list's server is anyone's: IMAGES_FROM is one ConfigMap edit away, and a registry can be
taken over or misconfigured. So a fetch follows redirects only to http(s), never from https
down to http, and only to hosts IMAGES_FROM_HOSTS allows; a failure's reason (logged, and the
note of an Event) quotes nothing the server sent: a status code, never its reason phrase, body
or a malformed line. And IMAGES_FROM_TIMEOUT bounds the fetch as a whole, redirects included.

How the whole is bounded. A socket timeout bounds one blocking call only: a server sending one
byte a second never trips it, in the status line and headers as in the body. So every read of
the answer (status line, headers, body, a proxy's CONNECT answer) is given only the time left
until one deadline (`_BoundedReader`), and so is the connection (`_bound`), the TLS
handshake (OpenSSL keeps its own deadline from the socket's timeout) and each redirect. What
no socket timeout reaches, a name lookup (getaddrinfo) that hangs, is covered by doing the
fetch in a worker thread that the caller waits for only a little past the deadline; the worker
then ends by itself, its socket's reads failing at the deadline.
"""

from __future__ import annotations

import functools
import http.client
import io
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from imagepuller.imagelists import ListUnavailable, read_limited, ssl_context
from imagepuller.imageparsers import host_allowed

# Redirects followed for one list (a route or a CDN in front of a registry needs one or two).
MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# How long past the deadline the caller waits for the worker before giving the fetch up.
_ABANDON_AFTER = 1.0
# What of a refused redirect's target is shown: only a scheme or host of plain characters.
_SHOWABLE_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,15}")
_SHOWABLE_HOST = re.compile(r"[a-z0-9.:\[\]-]{1,253}")
# A URL as http.client would send it: printable ASCII, no spaces.
_PLAIN_URL = re.compile(r"[!-~]+")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("IMAGES_FROM_TIMEOUT passed")
    return left


class _BoundedReader(io.RawIOBase):
    """A socket's reading side where each read waits at most until ``deadline``."""

    def __init__(self, sock: socket.socket, deadline: float):
        super().__init__()
        self._sock = sock
        # The socket's own raw reader: while it is open the socket stays open, even once the
        # connection object closes it (as urllib does before the body is read).
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _BoundedResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, deadline: float, **kwargs: Any):
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # the unbounded reader just made, not read yet
        self.fp = io.BufferedReader(_BoundedReader(sock, deadline))


def _bound(connection: http.client.HTTPConnection, deadline: float) -> None:
    """Have ``connection`` connect, and read every answer, within ``deadline``."""

    def connect_within(
        address: tuple[str, int], timeout: object = None, source_address: Any = None
    ) -> socket.socket:
        sock = socket.create_connection(address, _remaining(deadline), source_address)
        try:
            sock.settimeout(_remaining(deadline))  # what is left, for the TLS handshake
        except TimeoutError:
            sock.close()
            raise
        return sock

    connection._create_connection = connect_within  # type: ignore[attr-defined]
    # http.client builds each answer (a proxy's CONNECT answer too) with response_class.
    connection.response_class = functools.partial(  # type: ignore[assignment]
        _BoundedResponse, deadline=deadline
    )


class _BoundedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, deadline: float, **kwargs: Any):
        super().__init__(host, **kwargs)
        _bound(self, deadline)


class _BoundedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, *, deadline: float, **kwargs: Any):
        super().__init__(host, **kwargs)
        _bound(self, deadline)


class _BoundedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: float):
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        bounded = functools.partial(_BoundedHTTPConnection, deadline=self._deadline)
        return self.do_open(bounded, req)


class _BoundedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: float, context: ssl.SSLContext | None):
        super().__init__(context=context)
        self._deadline = deadline
        self._list_context = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        bounded = functools.partial(_BoundedHTTPSConnection, deadline=self._deadline)
        return self.do_open(bounded, req, context=self._list_context)


def _open_once(url: str, context: ssl.SSLContext | None, deadline: float) -> Any:
    """One request, no redirect followed: a 3xx, as any answer but 2xx, is an HTTPError.
    Only http and https are handled (no ftp, file or data), proxies from the environment."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # http_proxy, https_proxy and no_proxy
        urllib.request.UnknownHandler(),
        _BoundedHTTPHandler(deadline),
        _BoundedHTTPSHandler(deadline, context),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener.open(url, timeout=_remaining(deadline))


def _list_context(source: str, ca_bundle: str | None) -> ssl.SSLContext:
    try:
        return ssl_context(ca_bundle)
    except (OSError, ssl.SSLError, ValueError) as err:  # a bundle file gone or changed since
        raise ListUnavailable(
            source, f"the CA bundle (IMAGES_FROM_CA_BUNDLE) is not usable: {err}"
        ) from None


def _scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower()


def _is_plain_url(url: str) -> bool:
    """An http(s) URL with a host and a valid port, as http.client would send it."""
    if not _PLAIN_URL.fullmatch(url) or _scheme(url) not in ("http", "https"):
        return False
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return bool(parts.hostname)


def _redirect_target(
    source: str, current: str, location: str, allowed_hosts: tuple[str, ...]
) -> str:
    """Where a redirect from ``current`` leads, if it may be followed."""
    target = urllib.parse.urldefrag(urllib.parse.urljoin(current, location.strip()))[0]
    scheme = _scheme(target)
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if _SHOWABLE_SCHEME.fullmatch(scheme) else "another scheme"
        raise ListUnavailable(
            source, f"redirect to {shown}... refused: only http(s) redirects are followed"
        )
    if _scheme(current) == "https" and scheme == "http":
        raise ListUnavailable(
            source, "redirect from https to http refused: TLS is never given up on the way"
        )
    if not _is_plain_url(target):
        raise ListUnavailable(source, "redirect to an invalid URL refused")
    if not host_allowed(target, allowed_hosts):
        host = (urllib.parse.urlsplit(target).hostname or "").lower()
        shown = host if _SHOWABLE_HOST.fullmatch(host) else "a host"
        raise ListUnavailable(
            source, f"redirect to {shown} refused: not a host IMAGES_FROM_HOSTS allows"
        )
    return target


def _timed_out(timeout: float) -> str:
    return f"no complete answer within {timeout:g} s (IMAGES_FROM_TIMEOUT)"


def _fetch_once(
    source: str,
    url: str,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> bytes | str:
    """The body of ``url``, or the Location a redirect gives; ListUnavailable with a reason
    that holds nothing the server sent."""
    try:
        with _open_once(url, context, deadline) as response:
            return read_limited(response, source, max_bytes, deadline)
    except urllib.error.HTTPError as err:
        location = err.headers.get("Location") if err.code in _REDIRECT_CODES else None
        err.close()  # its socket, at once rather than at garbage collection
        if location is None:
            # The code only: a reason phrase or a body is the server's text, and this
            # reason becomes an Event anyone reading Events sees.
            raise ListUnavailable(source, f"the server answered HTTP {err.code}") from None
        return str(location)
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, TimeoutError):  # connecting, a TLS handshake that never ends
            raise ListUnavailable(source, _timed_out(timeout)) from None
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise ListUnavailable(
                source,
                f"TLS certificate not trusted ({reason.verify_message}); give the CA that "
                "signed it in IMAGES_FROM_CA_BUNDLE",
            ) from None
        raise ListUnavailable(source, f"cannot connect: {reason}") from None
    except TimeoutError:
        raise ListUnavailable(source, _timed_out(timeout)) from None
    except http.client.RemoteDisconnected:
        raise ListUnavailable(
            source, "the server closed the connection without an answer"
        ) from None
    except (http.client.HTTPException, ValueError) as err:
        # A status line, header or chunk size that is not HTTP: its exception quotes the
        # server's bytes, so only its kind is told.
        raise ListUnavailable(
            source, f"the server's answer is not valid HTTP ({type(err).__name__})"
        ) from None
    except OSError as err:  # a reset connection
        raise ListUnavailable(source, f"cannot read: {err}") from None


def _fetch_following_redirects(
    url: str,
    *,
    deadline: float,
    timeout: float,
    max_bytes: int,
    ca_bundle: str | None,
    allowed_hosts: tuple[str, ...],
) -> bytes:
    if not _is_plain_url(url):
        raise ListUnavailable(url, "not an http:// or https:// URL with a host")
    if not host_allowed(url, allowed_hosts):
        raise ListUnavailable(url, "not on a host IMAGES_FROM_HOSTS allows")
    context: ssl.SSLContext | None = None
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        if context is None and _scheme(current) == "https":
            context = _list_context(url, ca_bundle)
        answer = _fetch_once(
            url, current, context=context, deadline=deadline, timeout=timeout, max_bytes=max_bytes
        )
        if isinstance(answer, bytes):
            return answer
        current = _redirect_target(url, current, answer, allowed_hosts)
    raise ListUnavailable(url, f"more than {MAX_REDIRECTS} redirects; refused")


def fetch(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    ca_bundle: str | None,
    allowed_hosts: tuple[str, ...] = (),
) -> bytes:
    """The body of the list at ``url``, fetched as a whole (redirects too) within ``timeout``."""
    deadline = time.monotonic() + timeout
    outcome: list[bytes | BaseException] = []

    def work() -> None:
        try:
            outcome.append(
                _fetch_following_redirects(
                    url,
                    deadline=deadline,
                    timeout=timeout,
                    max_bytes=max_bytes,
                    ca_bundle=ca_bundle,
                    allowed_hosts=allowed_hosts,
                )
            )
        except BaseException as err:  # handed to the caller, in its thread
            outcome.append(err)

    worker = threading.Thread(target=work, name="image-list-fetch", daemon=True)
    worker.start()
    worker.join(timeout + _ABANDON_AFTER)
    if not outcome:  # stuck where no socket timeout reaches (a name lookup): given up
        raise ListUnavailable(url, _timed_out(timeout))
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result
