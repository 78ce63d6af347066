"""Fetching IMAGES_FROM lists as a server that is hostile, broken or slow would have it: redirects
only to http(s) and never down to http, no answer content in a failure's reason (it becomes an
Event), list hosts restricted by IMAGES_FROM_HOSTS, and every fetch bounded as a whole."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from imagepuller.config import ConfigError, load_config
from imagepuller.imagelists import MAX_PROBLEMS_KEPT, ListUnavailable, parse_list, read_source
from imagepuller.imageparsers import IMAGES_FROM_MAX_LISTS, host_allowed
from imagepuller.listfetch import MAX_REDIRECTS
from imagepuller.listsource import ImageListSource, ListReader
from imagepuller.sources import effective_environment
from tests.connectproxy import ConnectProxy
from tests.listserver import ListServer
from tests.trickleserver import TrickleServer

ROOT = Path(__file__).resolve().parents[2]
LIST = b"quay.io/che-incubator/che-code:latest\n"
SECRET = "s3cr3t-t0ken"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # urllib honours *_proxy from the environment: the local server must be reached directly.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture(scope="module")
def http_server():
    with ListServer({"/list.txt": LIST}) as server:
        yield server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    server = ListServer({"/list.txt": LIST}).with_tls(tmp_path_factory.mktemp("tls"))
    with server:
        yield server


@pytest.fixture
def listener():
    """A port that accepts connections (nothing answers): did anyone connect?"""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def connected(sock: socket.socket) -> bool:
    try:
        accepted, _ = sock.accept()
    except BlockingIOError:
        return False
    accepted.close()
    return True


def failure(url: str, **kwargs: object) -> ListUnavailable:
    with pytest.raises(ListUnavailable) as caught:
        read_source(url, timeout=kwargs.pop("timeout", 5), **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- redirects -----------------------------------------------------------------------------


def test_a_redirect_to_ftp_is_refused_and_never_followed(http_server, listener):
    port = listener.getsockname()[1]
    http_server.redirects["/to-ftp"] = (302, f"ftp://127.0.0.1:{port}/{SECRET}")
    error = failure(http_server.url("/to-ftp"))
    assert "redirect" in error.reason and "refused" in error.reason
    assert "only http" in error.reason
    assert SECRET not in str(error)  # the Location is the server's text
    time.sleep(0.2)
    assert not connected(listener)


@pytest.mark.parametrize("scheme", ["file", "data", "gopher"])
def test_a_redirect_to_any_other_scheme_is_refused(http_server, scheme):
    http_server.redirects[f"/to-{scheme}"] = (301, f"{scheme}:///etc/passwd")
    error = failure(http_server.url(f"/to-{scheme}"))
    assert "refused" in error.reason and "only http" in error.reason


def test_a_redirect_from_https_to_http_is_refused(tls_server, http_server):
    http_server.requests.clear()
    tls_server.redirects["/down"] = (302, http_server.url("/list.txt"))
    error = failure(tls_server.url("/down"), ca_bundle=tls_server.ca_pem)
    assert "from https to http refused" in error.reason
    assert http_server.requests == []


def test_a_redirect_from_http_to_https_and_a_relative_one_are_followed(tls_server, http_server):
    http_server.redirects["/up"] = (301, tls_server.url("/relative"))
    tls_server.redirects["/relative"] = (307, "/list.txt")
    listed = read_source(http_server.url("/up"), timeout=5, ca_bundle=tls_server.ca_pem)
    assert listed.references == ("quay.io/che-incubator/che-code:latest",)


def redirect_chain(server: ListServer, length: int) -> str:
    for hop in range(length):
        target = "/list.txt" if hop == length - 1 else f"/chain{length}-{hop + 1}"
        server.redirects[f"/chain{length}-{hop}"] = (302, target)
    return server.url(f"/chain{length}-0")


def test_redirects_are_capped(http_server):
    assert read_source(redirect_chain(http_server, MAX_REDIRECTS), timeout=5).references
    http_server.requests.clear()
    error = failure(redirect_chain(http_server, MAX_REDIRECTS + 1))
    assert f"more than {MAX_REDIRECTS} redirects" in error.reason
    assert len(http_server.requests) == MAX_REDIRECTS + 1


def test_a_redirect_loop_ends(http_server):
    http_server.redirects["/loop"] = (302, "/loop")
    assert "redirects" in failure(http_server.url("/loop")).reason


def test_a_redirect_to_a_host_not_allowed_is_refused(http_server, tls_server):
    allowed = (f"127.0.0.1:{http_server.port}",)
    assert read_source(http_server.url("/list.txt"), timeout=5, allowed_hosts=allowed).references
    tls_server.requests.clear()
    http_server.redirects["/elsewhere"] = (302, tls_server.url("/list.txt"))
    error = failure(
        http_server.url("/elsewhere"), ca_bundle=tls_server.ca_pem, allowed_hosts=allowed
    )
    assert "IMAGES_FROM_HOSTS" in error.reason and "refused" in error.reason
    assert tls_server.requests == []


def test_lists_are_read_through_the_proxies_of_the_environment(monkeypatch, tls_server):
    with ListServer({"/list.txt": LIST}) as plain, ConnectProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("https_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "")
        with_tls = read_source(tls_server.url("/list.txt"), timeout=5, ca_bundle=tls_server.ca_pem)
        assert with_tls.references == ("quay.io/che-incubator/che-code:latest",)
        assert proxy.requests[-1] == f"CONNECT 127.0.0.1:{tls_server.port} HTTP/1.0"
        assert read_source(plain.url("/list.txt"), timeout=5).references
        assert proxy.requests[-1].startswith(f"GET {plain.url('/list.txt')} ")


# --- no answer content in a reason ----------------------------------------------------------


def test_an_http_error_is_reported_by_its_status_code_only(http_server):
    http_server.errors["/teapot"] = (418, f"Phrase {SECRET}", f"body {SECRET}".encode())
    url = http_server.url("/teapot")
    error = failure(url)
    assert str(error) == f"{url}: the server answered HTTP 418"
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    "answer",
    [
        f"XTTP/1.1 200 {SECRET}\r\n\r\n",  # no status line: http.client quotes it
        f"HTTP/7.0 200 {SECRET}\r\n\r\n",  # an unknown version: quoted too
        f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz{SECRET}\r\n",  # chunk size
    ],
)
def test_a_malformed_answer_is_a_failure_that_quotes_nothing_of_it(answer):
    with TrickleServer(answer.encode()) as server:
        error = failure(server.url())
    assert SECRET not in str(error)
    assert "HTTP" in error.reason


def test_skipped_lines_kept_and_logged_are_capped():
    text = "".join(f"bad line {number} {SECRET}!\n" for number in range(MAX_PROBLEMS_KEPT + 30))
    listed = parse_list(text, "list")
    assert len(listed.problems) == MAX_PROBLEMS_KEPT + 1
    assert listed.problems[-1] == "list: and 30 more lines skipped"


def test_the_source_logs_at_most_the_capped_problems_of_a_list():
    text = "".join(f"bad line {number}!\n" for number in range(100))
    source = ImageListSource(read=lambda url, **_: parse_list(text, url))
    cfg = load_config({"IMAGES_FROM": "https://lists.example.com/l.txt"})
    with capture_logs() as logs:
        source.read(cfg)
    skipped = [entry for entry in logs if entry["event"] == "image_list_entry_skipped"]
    assert len(skipped) == MAX_PROBLEMS_KEPT + 1


# --- IMAGES_FROM_HOSTS and the number of lists ------------------------------------------------


def test_images_from_hosts_refuses_a_list_on_another_host():
    with pytest.raises(ConfigError) as caught:
        load_config(
            {
                "IMAGES_FROM": "https://lists.example.com/a.txt https://evil.example/b.txt",
                "IMAGES_FROM_HOSTS": "lists.example.com, registry.example.com:8443",
            }
        )
    (problem,) = caught.value.problems
    assert "IMAGES_FROM" in problem and "IMAGES_FROM_HOSTS" in problem
    assert "https://evil.example/b.txt" in problem and "a.txt" not in problem


def test_images_from_hosts_allows_its_hosts_and_ports():
    cfg = load_config(
        {
            "IMAGES_FROM": "https://Lists.Example.com/a.txt https://registry.example.com:8443/b",
            "IMAGES_FROM_HOSTS": "lists.example.com,registry.example.com:8443",
        }
    )
    assert cfg.images_from_hosts == ("lists.example.com", "registry.example.com:8443")
    assert load_config({"IMAGES": "a=quay.io/a:1"}).images_from_hosts == ()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://lists.example.com/a", True),
        ("https://lists.example.com:8443/a", True),  # a host alone: any port
        ("https://lists.example.com./a", True),
        ("https://other.example.com/a", False),
        ("https://lists.example.com.evil/a", False),
        ("https://registry.example.com:8443/a", True),
        ("https://registry.example.com/a", False),  # 443 is not 8443
        ("http://registry.example.com:8443/a", True),
        ("https://lists.example.com@evil.example/a", False),  # userinfo
        ("https://lists.example.com%2eevil/a", False),  # urllib would unquote the host
        ("https://[::1]:9000/a", True),
        ("https://[::1]/a", False),
        ("https://127.0.0.1/a", True),
    ],
)
def test_host_allowed(url, allowed):
    hosts = ("lists.example.com", "registry.example.com:8443", "[::1]:9000", "127.0.0.1")
    assert host_allowed(url, hosts) is allowed


def test_no_images_from_hosts_allows_every_host():
    assert host_allowed("https://anything.example/a", ())


@pytest.mark.parametrize("value", ["https://x.example", "x.example/path", "a b!", "x:99999", "*"])
def test_an_invalid_images_from_hosts_entry_is_refused_with_the_form(value):
    with pytest.raises(ConfigError) as caught:
        load_config({"IMAGES": "a=quay.io/a:1", "IMAGES_FROM_HOSTS": value})
    (problem,) = caught.value.problems
    assert problem.startswith("IMAGES_FROM_HOSTS=") and "host:port" in problem


def test_a_configmap_edit_cannot_change_images_from_hosts():
    # Whoever may edit the ConfigMap may set IMAGES_FROM: the hosts it may name are set
    # where only the Deployment's editors reach (its environment), as the process settings are.
    base = {"IMAGES_FROM_HOSTS": "lists.example.com"}
    edited = effective_environment(base, {"IMAGES_FROM_HOSTS": "evil.example"})
    assert edited["IMAGES_FROM_HOSTS"] == "lists.example.com"
    assert "IMAGES_FROM_HOSTS" not in effective_environment({}, {"IMAGES_FROM_HOSTS": "x.example"})


def test_the_number_of_lists_is_bounded():
    urls = [f"https://lists.example.com/{n}.txt" for n in range(IMAGES_FROM_MAX_LISTS + 1)]
    assert load_config({"IMAGES_FROM": " ".join(urls[:-1])}).images_from == tuple(urls[:-1])
    with pytest.raises(ConfigError) as caught:
        load_config({"IMAGES_FROM": " ".join(urls)})
    (problem,) = caught.value.problems
    assert problem.startswith("IMAGES_FROM=")
    assert f"at most {IMAGES_FROM_MAX_LISTS}" in problem


def test_the_source_passes_the_allowed_hosts_to_each_reading():
    seen: list[object] = []

    def read(url: str, **limits: object):
        seen.append(limits.get("allowed_hosts"))
        return parse_list("", url)

    cfg = load_config(
        {"IMAGES_FROM": "https://lists.example.com/l.txt", "IMAGES_FROM_HOSTS": "lists.example.com"}
    )
    ImageListSource(read=read).read(cfg)
    assert seen == [("lists.example.com",)]


def test_a_change_of_images_from_hosts_reads_the_lists_again():
    source = ImageListSource(read=lambda url, **_: parse_list("", url))
    env = {"IMAGES_FROM": "https://lists.example.com/l.txt"}
    source.read(load_config(env))
    assert not source.due(load_config(env))
    assert source.due(load_config({**env, "IMAGES_FROM_HOSTS": "lists.example.com"}))


@pytest.mark.timeout(30)
def test_the_lists_are_read_side_by_side():
    # Two lists that each finish only once the other has begun: read one after the other,
    # the first would wait in vain (and a slow list would hold the others up by its timeout).
    both = threading.Barrier(2, timeout=5)

    def read(url: str, **_limits: object):
        both.wait()
        return parse_list("quay.io/a/" + url.rsplit("/", 1)[1] + ":1\n", url)

    urls = "https://lists.example.com/one https://lists.example.com/two"
    source = ImageListSource(read=read)
    outcome = source.read(load_config({"IMAGES_FROM": urls}))
    assert outcome.failing == {}
    cfg = load_config({"IMAGES_FROM": urls})
    assert sorted(source.references(cfg)) == ["quay.io/a/one:1", "quay.io/a/two:1"]


# --- the controller's reader thread ----------------------------------------------------------

ONE = "https://lists.example.com/one"
TWO = "https://lists.example.com/two"


class Fetches:
    """A source's fetch that waits for ``go`` (one release per fetch, so a test decides when
    each one ends) and counts how many run at once."""

    def __init__(self):
        self.source = ImageListSource(read=lambda url, **_: parse_list("quay.io/a/b:1\n", url))
        self.go = threading.Semaphore(0)
        self.started: list[str] = []
        self.at_once = self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, cfg):
        with self.lock:
            self.started.append(cfg.images_from[0])
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        self.go.acquire(timeout=10)
        try:
            return self.source.fetch(cfg)
        finally:
            with self.lock:
                self.at_once -= 1


def taken(reader: ListReader, done: threading.Semaphore):
    assert done.acquire(timeout=10), "the reader never said it was done"
    finished = reader.take()
    assert finished is not None
    return finished


def test_the_reader_fetches_one_reading_at_a_time_and_only_the_newest_asked():
    fetches, done = Fetches(), threading.Semaphore(0)
    reader = ListReader(fetches, done.release, threading.Event())
    first = reader.ask(load_config({"IMAGES_FROM": ONE}))
    assert reader.ask(load_config({"IMAGES_FROM": ONE})) == first  # the one underway
    reader.ask(load_config({"IMAGES_FROM": TWO}))  # replaced by the next ask
    last = reader.ask(load_config({"IMAGES_FROM": ONE}))
    assert last > first and reader.busy
    # One fetch at a time is let go: were both let go at once, the second could end before the
    # first is taken, and only the newest is kept (a race of the test, seen under load).
    fetches.go.release()
    assert taken(reader, done).ticket == first
    fetches.go.release()
    finished = taken(reader, done)
    assert finished.ticket == last
    assert finished.fetched.made_for(load_config({"IMAGES_FROM": ONE}))
    assert fetches.started == [ONE, ONE] and fetches.most_at_once == 1
    assert not reader.busy


def test_a_reading_that_ends_after_the_stop_is_not_handed_over():
    fetches, done, stop = Fetches(), threading.Semaphore(0), threading.Event()
    reader = ListReader(fetches, done.release, stop)
    reader.ask(load_config({"IMAGES_FROM": ONE}))
    stop.set()
    fetches.go.release()
    assert not done.acquire(timeout=1)
    assert reader.take() is None


def test_a_reading_that_fails_unexpectedly_is_handed_over_as_failing():
    def fetch(cfg):
        raise RuntimeError("a bug")

    done = threading.Semaphore(0)
    reader = ListReader(fetch, done.release, threading.Event())
    cfg = load_config({"IMAGES_FROM": f"{ONE} {TWO}"})
    with capture_logs():
        reader.ask(cfg)
        finished = taken(reader, done)
    outcome = ImageListSource().apply(cfg, finished.fetched)
    assert outcome.failing == dict.fromkeys((ONE, TWO), "reading failed (RuntimeError)")


def test_a_source_reading_elsewhere_is_not_due_again_nor_retried_meanwhile():
    cfg = load_config({"IMAGES_FROM": ONE})
    source = ImageListSource(read=lambda url, **_: parse_list("quay.io/a/b:1\n", url))
    source.fetching(cfg)
    assert not source.due(cfg) and source.seconds_to_retry() is None
    assert source.due(load_config({"IMAGES_FROM": TWO}))  # other settings: read them
    source.apply(cfg, source.fetch(cfg))
    assert not source.due(cfg) and source.references(cfg) == ("quay.io/a/b:1",)
