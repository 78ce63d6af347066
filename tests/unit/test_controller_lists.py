"""IMAGES_FROM in the controller, against in-memory objects: lists read at start and before each
refresh, names that never change, and a list that fails or overflows never emptying a node."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from imagepuller.apierrors import Invalid
from imagepuller.config import load_config
from imagepuller.imagelists import MAX_PROBLEMS_KEPT, ImageList, ListUnavailable, read_source
from imagepuller.listsource import RETRY_SECONDS, ImageListSource
from tests import fakes as controller
from tests.fakes import ME, NAME, events
from tests.listserver import ListServer
from tests.trickleserver import TrickleServer

URL = "https://devspaces.example.com/plugin-registry/v3/external_images.txt"
URL2 = "https://devspaces.example.com/devfile-registry/devfiles/external_images.txt"
ENV = {
    "IMAGES": "",
    "IMAGES_FROM": URL,
    "CACHING_INTERVAL_HOURS": "1",
    "READY_TIMEOUT": "60s",
    "NAMESPACE": "ns",
}
CODE = "quay.io/che-incubator/che-code:latest"
UDI = "quay.io/devfile/universal-developer-image:ubi8-latest"
IDEA = "quay.io/che-incubator/che-idea:next"


class Lists:
    """What the registries serve: url -> references, or an exception to raise. While ``gate``
    is closed a reading hangs, as against a server that trickles for its whole timeout."""

    def __init__(self, served: dict[str, list[str] | Exception]):
        self.served = served
        self.reads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.hanging = threading.Event()  # a reading waits at the closed gate

    def __call__(self, url: str, **_limits: object) -> ImageList:
        self.reads.append(url)
        if not self.gate.is_set():
            self.hanging.set()
            self.gate.wait(30)
        served = self.served[url]
        if isinstance(served, Exception):
            raise served
        return ImageList(url, tuple(served))


def make(kube, clock, wall, lists, env=None, identity=ME):
    return controller.make(
        kube,
        clock,
        wall,
        env,
        identity,
        base=ENV,
        lists=ImageListSource(read=lists, clock=clock),
    )


def containers(kube) -> list[tuple[str, str]]:
    spec = kube.objects[NAME]["spec"]["template"]["spec"]
    return [(c["name"], c["image"]) for c in spec["containers"]]


def settle(controller):
    """One look, then, while a reading of the lists is underway (on the controller's reader
    thread), wait for the reader to put the puller back in the queue and look again, as
    ``run()`` does."""
    requeue = controller.reconcile()
    while controller.reading_lists:
        key = controller.queue.get(timeout=10)
        assert key is not None, "the list reading never ended"
        controller.queue.done(key)
        requeue = controller.reconcile()
    return requeue


def ready(controller, kube):
    settle(controller)
    kube.roll_out()
    settle(controller)


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` on another thread, failing (rather than hanging the suite) if it has not
    returned after ``seconds``: a look must never wait for a list server."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("returned", call()))
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            outcome.append(("raised", err))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s: blocked on a list reading"
    how, value = outcome[0]
    if how == "raised":
        raise value
    return value


def test_the_lists_images_are_cached_with_names_from_the_references(kube, clock, wall):
    lists = Lists({URL: [UDI, CODE, CODE]})
    controller = make(kube, clock, wall, lists, {"IMAGES": "mine=quay.io/me/tools:1;"})
    ready(controller, kube)
    assert containers(kube) == [
        ("mine", "quay.io/me/tools:1"),  # IMAGES first, as written
        ("che-code", CODE),
        ("universal-developer-image", UDI),
    ]
    assert lists.reads == [URL]  # read once at start, not on every look


def test_before_each_refresh_the_lists_are_read_and_a_new_image_renames_nothing(kube, clock, wall):
    lists = Lists({URL: [CODE, UDI]})
    controller = make(kube, clock, wall, lists)
    ready(controller, kube)
    before = containers(kube)
    uid = kube.objects[NAME]["metadata"]["uid"]
    # The new image sorts first and shares a name with nothing; one that collides too.
    lists.served[URL] = [CODE, UDI, IDEA, "registry.example.com/other/che-code:2"]
    wall.now += 3600
    with capture_logs() as logs:
        settle(controller)
    assert lists.reads == [URL, URL]
    after = containers(kube)
    assert [c for c in after if c in before] == before  # no container renamed
    name_of = {image: name for name, image in after}
    assert name_of[IDEA] == "che-idea"
    other = name_of["registry.example.com/other/che-code:2"]
    assert other.startswith("che-code-") and len(after) == 4
    assert kube.objects[NAME]["metadata"]["uid"] == uid  # updated in place: it rolls
    assert kube.writes[-1] == ("replace", NAME)
    assert events(logs, "daemonset_updated")


def test_a_list_that_fails_keeps_its_last_good_reading_and_says_so_once(kube, clock, wall):
    lists = Lists({URL: [CODE, UDI]})
    controller = make(kube, clock, wall, lists)
    ready(controller, kube)
    before = containers(kube)
    lists.served[URL] = ListUnavailable(URL, "cannot connect: [Errno 111] Connection refused")
    wall.now += 3600
    with capture_logs() as logs:
        settle(controller)  # the refresh still happens, with every image
        assert kube.writes[-1] == ("patch", NAME)
        assert containers(kube) == before
        clock.now += RETRY_SECONDS
        assert settle(controller) is not None
    assert lists.reads == [URL, URL, URL]  # retried after a minute
    (failed, again) = events(logs, "image_list_failed")
    assert failed["url"] == URL and failed["kept_images"] == 2 and "refused" in failed["reason"]
    # One Event for the episode, not one per attempt.
    (event,) = [e for e in kube.recorded_events if e["reason"] == "ImageListUnavailable"]
    assert event["type"] == "Warning" and event["reason"] == "ImageListUnavailable"
    assert event["regarding"]["kind"] == "DaemonSet"
    assert URL in event["note"] and "refused" in event["note"]
    # It comes back: read, and nothing changes because nothing in it did.
    lists.served[URL] = [CODE, UDI]
    clock.now += RETRY_SECONDS
    with capture_logs() as logs:
        settle(controller)
    assert events(logs, "image_list_read")
    assert containers(kube) == before


def test_a_shrunken_list_drops_an_image_only_once_it_was_read(kube, clock, wall):
    lists = Lists({URL: [CODE, UDI], URL2: [IDEA]})
    controller = make(kube, clock, wall, lists, {"IMAGES_FROM": f"{URL};{URL2}"})
    ready(controller, kube)
    assert len(containers(kube)) == 3
    lists.served[URL] = [CODE]
    lists.served[URL2] = ListUnavailable(URL2, "the server answered HTTP 503")
    wall.now += 3600
    settle(controller)
    assert containers(kube) == [("che-code", CODE), ("che-idea", IDEA)]


def test_over_the_image_limit_nothing_of_the_new_reading_is_used(kube, clock, wall):
    lists = Lists({URL: [CODE, UDI]})
    controller = make(kube, clock, wall, lists, {"IMAGES_FROM_MAX_IMAGES": "2"})
    ready(controller, kube)
    before = containers(kube)
    lists.served[URL] = [CODE, UDI, IDEA]
    wall.now += 3600
    with capture_logs() as logs:
        settle(controller)
    assert containers(kube) == before
    (failed,) = events(logs, "image_list_failed")
    assert "IMAGES_FROM_MAX_IMAGES" in failed["reason"] and "3 images" in failed["reason"]


def test_a_restart_while_the_registry_is_down_keeps_and_re_pulls_nothing(kube, clock, wall):
    first = make(kube, clock, wall, Lists({URL: [CODE, UDI]}))
    ready(first, kube)
    before = containers(kube)
    down = Lists({URL: ListUnavailable(URL, "no answer within 10 s (IMAGES_FROM_TIMEOUT)")})
    second = make(kube, clock, wall, down, identity="other/2")
    kube.writes.clear()
    for _ in range(3):
        settle(second)
    assert kube.writes == [("patch", NAME)]  # taken over with one annotation, not updated
    assert containers(kube) == before
    # Once the list is read the names the pods have stay, whatever the order it comes in
    # (containers follow the references' sorted order).
    down.served[URL] = [UDI, CODE, IDEA]
    clock.now += RETRY_SECONDS
    settle(second)
    assert set(before) < set(containers(kube))
    assert ("che-idea", IDEA) in containers(kube)


def test_no_image_at_all_creates_nothing_and_waits(kube, clock, wall):
    lists = Lists({URL: ListUnavailable(URL, "the server answered HTTP 404 Not Found")})
    controller = make(kube, clock, wall, lists)
    with capture_logs() as logs:
        assert settle(controller) == pytest.approx(RETRY_SECONDS)
        assert settle(controller) == pytest.approx(RETRY_SECONDS)
    assert kube.objects == {} and kube.writes == []
    assert len(events(logs, "waiting_for_images")) == 1
    lists.served[URL] = [CODE]
    clock.now += RETRY_SECONDS
    settle(controller)
    assert containers(kube) == [("che-code", CODE)]


def test_a_reading_the_api_refuses_keeps_the_last_good_one_and_runs_on(kube, clock, wall):
    lists = Lists({URL: [CODE]})
    controller = make(kube, clock, wall, lists)
    ready(controller, kube)
    lists.served[URL] = [CODE, UDI]
    kube.reject_dry_run = Invalid("spec.template.spec.containers[1]: Invalid value", status=422)
    wall.now += 3600
    with capture_logs() as logs:
        settle(controller)
    assert containers(kube) == [("che-code", CODE)]
    assert events(logs, "image_list_rejected")
    assert kube.writes[-1] == ("patch", NAME)  # the refresh itself went on
    assert [e for e in kube.recorded_events if e["reason"] == "ImageListUnavailable"]


def test_images_from_added_by_a_live_edit_is_read_at_once(kube, clock, wall):
    lists = Lists({URL: [CODE]})
    controller = make(
        kube, clock, wall, lists, {"IMAGES": "mine=quay.io/me/tools:1;", "IMAGES_FROM": ""}
    )
    ready(controller, kube)
    assert lists.reads == []
    controller.offer(load_config({**ENV, "IMAGES": "mine=quay.io/me/tools:1;"}))
    settle(controller)
    assert lists.reads == [URL]
    assert containers(kube) == [("mine", "quay.io/me/tools:1"), ("che-code", CODE)]


def test_what_a_list_server_says_reaches_no_event_and_the_log_only_capped(
    kube, clock, wall, monkeypatch
):
    # The real reader against a local server: its reason phrase, body and lines are its text.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    secret = "s3cr3t-t0ken"
    page = "".join(f"<p>{secret} {number}</p>\n" for number in range(100))
    with ListServer({"/list.txt": f"{CODE}\n{page}".encode()}) as server:
        url = server.url("/list.txt")
        controller = make(
            kube, clock, wall, read_source, {"IMAGES_FROM": url, "IMAGES_FROM_TIMEOUT": "5s"}
        )
        with capture_logs() as logs:
            ready(controller, kube)
        assert containers(kube) == [("che-code", CODE)]
        skipped = events(logs, "image_list_entry_skipped")
        assert len(skipped) == MAX_PROBLEMS_KEPT + 1  # the first 20, then how many more
        server.errors["/list.txt"] = (403, f"Forbidden {secret}", f"token={secret}".encode())
        wall.now += 3600
        with capture_logs() as logs:
            settle(controller)
    (failed,) = events(logs, "image_list_failed")
    assert failed["reason"] == "the server answered HTTP 403"
    (event,) = [e for e in kube.recorded_events if e["reason"] == "ImageListUnavailable"]
    assert "HTTP 403" in event["note"] and secret not in event["note"]
    assert containers(kube) == [("che-code", CODE)]  # its last good reading stays


# --- list reading off the path that keeps the DaemonSet (issue 17, item 6) --------------------

MINE = ("mine", "quay.io/me/tools:1")
TIMEOUT = 10.0  # IMAGES_FROM_TIMEOUT's default: a held action waits at most this + 1 s


def test_a_daemonset_deleted_while_a_list_hangs_before_a_refresh_is_recreated_at_once(
    kube, clock, wall
):
    lists = Lists({URL: [CODE]})
    controller = make(kube, clock, wall, lists, {"IMAGES": "mine=quay.io/me/tools:1;"})
    ready(controller, kube)
    lists.gate.clear()
    try:
        wall.now += 3600  # a refresh is due: the lists are read first, and the refresh waits
        assert within(10, controller.reconcile) == pytest.approx(TIMEOUT + 1)
        assert kube.writes == [("create", NAME)]
        del kube.objects[NAME]
        with capture_logs() as logs:
            within(10, controller.reconcile)
        assert kube.writes[-1] == ("create", NAME)  # not held for the list
        assert events(logs, "daemonset_deleted_externally")
        assert containers(kube) == [MINE, ("che-code", CODE)]  # its last good reading
    finally:
        lists.gate.set()
    settle(controller)
    assert containers(kube) == [MINE, ("che-code", CODE)]


def test_an_edit_applies_at_once_while_the_new_list_hangs(kube, clock, wall):
    lists = Lists({URL: [CODE], URL2: [IDEA]})
    controller = make(kube, clock, wall, lists, {"IMAGES": "mine=quay.io/me/tools:1;"})
    ready(controller, kube)
    lists.gate.clear()
    try:
        controller.offer(
            load_config({**ENV, "IMAGES": "mine=quay.io/me/tools:2;", "IMAGES_FROM": URL2})
        )
        within(10, controller.reconcile)
        assert kube.writes[-1] == ("replace", NAME)
        # The new IMAGES at once; the old list's images stay until the new list is read.
        assert containers(kube) == [("mine", "quay.io/me/tools:2"), ("che-code", CODE)]
    finally:
        lists.gate.set()
    kube.roll_out()
    settle(controller)
    assert containers(kube) == [("mine", "quay.io/me/tools:2"), ("che-idea", IDEA)]


def test_a_hanging_list_holds_a_refresh_one_timeout_at_most(kube, clock, wall):
    lists = Lists({URL: [CODE]})
    controller = make(kube, clock, wall, lists)
    ready(controller, kube)
    lists.gate.clear()
    try:
        wall.now += 3600
        assert within(10, controller.reconcile) == pytest.approx(TIMEOUT + 1)
        assert kube.writes == [("create", NAME)]  # held for the reading
        clock.now += TIMEOUT + 1
        with capture_logs() as logs:
            within(10, controller.reconcile)
        assert kube.writes[-1] == ("patch", NAME)  # and then the refresh goes on without it
        assert events(logs, "refresh_started")
    finally:
        lists.gate.set()
    settle(controller)
    assert containers(kube) == [("che-code", CODE)]


def test_a_refresh_waits_for_the_reading_it_asked_for_and_rolls_a_changed_list(kube, clock, wall):
    lists = Lists({URL: [CODE]})
    controller = make(kube, clock, wall, lists)
    ready(controller, kube)
    lists.served[URL] = [CODE, UDI]
    lists.gate.clear()
    wall.now += 3600
    within(10, controller.reconcile)
    assert kube.writes == [("create", NAME)]
    lists.gate.set()
    settle(controller)
    assert kube.writes[-1] == ("replace", NAME)  # the change rolls as the refresh would have
    assert containers(kube) == [("che-code", CODE), ("universal-developer-image", UDI)]


def test_a_hanging_list_holds_the_first_create_one_timeout_at_most(kube, clock, wall):
    lists = Lists({URL: [CODE]})
    lists.gate.clear()
    controller = make(kube, clock, wall, lists, {"IMAGES": "mine=quay.io/me/tools:1;"})
    try:
        assert within(10, controller.reconcile) == pytest.approx(TIMEOUT + 1)
        assert kube.writes == []  # created with the lists' images if they come in time
        clock.now += TIMEOUT + 1
        within(10, controller.reconcile)
        assert kube.writes == [("create", NAME)]
        assert containers(kube) == [MINE]
    finally:
        lists.gate.set()
    settle(controller)
    assert containers(kube) == [MINE, ("che-code", CODE)]


def test_stopping_does_not_wait_for_a_list_that_hangs(kube, clock, wall):
    lists = Lists({URL: [CODE]})
    lists.gate.clear()
    controller = make(kube, clock, wall, lists)
    try:
        codes: list[int] = []
        worker = threading.Thread(target=lambda: codes.append(controller.run()), daemon=True)
        worker.start()
        assert lists.hanging.wait(10)
        controller.request_stop()
        worker.join(10)
        assert codes == [0], "run() still waits for the list after a stop request"
    finally:
        lists.gate.set()
    assert kube.writes == []


@pytest.fixture
def _direct(monkeypatch):
    # urllib honours *_proxy from the environment: the local server must be reached directly.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.mark.usefixtures("_direct")
def test_while_a_list_server_trickles_a_deleted_daemonset_is_recreated_at_once(kube, clock, wall):
    # The real reader against a server sending its status line one byte a second: the reading
    # lasts the whole timeout (a minute), and no look waits for it.
    with TrickleServer(b"HTTP/1.1 200 OK\r\n\r\n" + CODE.encode(), interval=1.0) as server:
        env = {
            "IMAGES": "mine=quay.io/me/tools:1;",
            "IMAGES_FROM": server.url(),
            "IMAGES_FROM_TIMEOUT": "60s",
        }
        controller = make(kube, clock, wall, read_source, env)
        assert within(10, controller.reconcile) == pytest.approx(61)  # the first create waits
        clock.now += 61
        within(10, controller.reconcile)
        assert kube.writes == [("create", NAME)]
        kube.roll_out()
        within(10, controller.reconcile)
        del kube.objects[NAME]
        within(10, controller.reconcile)
        assert kube.writes == [("create", NAME), ("create", NAME)]
        assert containers(kube) == [MINE]
