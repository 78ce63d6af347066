"""IMAGES_FROM in the controller, against in-memory objects: lists read at start and before each
refresh, names that never change, and a list that fails or overflows never emptying a node."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from imagepuller.config import load_config
from imagepuller.imagelists import MAX_PROBLEMS_KEPT, ImageList, ListUnavailable, read_source
from imagepuller.kube import Invalid
from imagepuller.listsource import RETRY_SECONDS, ImageListSource
from tests.listserver import ListServer
from tests.unit import test_controller as controller
from tests.unit.test_controller import ME, NAME, events

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
    """What the registries serve: url -> references, or an exception to raise."""

    def __init__(self, served: dict[str, list[str] | Exception]):
        self.served = served
        self.reads: list[str] = []

    def __call__(self, url: str, **_limits: object) -> ImageList:
        self.reads.append(url)
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


def ready(controller, kube):
    controller.reconcile()
    kube.roll_out()
    controller.reconcile()


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
        controller.reconcile()
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
        controller.reconcile()  # the refresh still happens, with every image
        assert kube.writes[-1] == ("patch", NAME)
        assert containers(kube) == before
        clock.now += RETRY_SECONDS
        assert controller.reconcile() is not None
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
        controller.reconcile()
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
    controller.reconcile()
    assert containers(kube) == [("che-code", CODE), ("che-idea", IDEA)]


def test_over_the_image_limit_nothing_of_the_new_reading_is_used(kube, clock, wall):
    lists = Lists({URL: [CODE, UDI]})
    controller = make(kube, clock, wall, lists, {"IMAGES_FROM_MAX_IMAGES": "2"})
    ready(controller, kube)
    before = containers(kube)
    lists.served[URL] = [CODE, UDI, IDEA]
    wall.now += 3600
    with capture_logs() as logs:
        controller.reconcile()
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
        second.reconcile()
    assert kube.writes == [("patch", NAME)]  # taken over with one annotation, not updated
    assert containers(kube) == before
    # Once the list is read the names the pods have stay, whatever the order it comes in
    # (containers follow the references' sorted order).
    down.served[URL] = [UDI, CODE, IDEA]
    clock.now += RETRY_SECONDS
    second.reconcile()
    assert set(before) < set(containers(kube))
    assert ("che-idea", IDEA) in containers(kube)


def test_no_image_at_all_creates_nothing_and_waits(kube, clock, wall):
    lists = Lists({URL: ListUnavailable(URL, "the server answered HTTP 404 Not Found")})
    controller = make(kube, clock, wall, lists)
    with capture_logs() as logs:
        assert controller.reconcile() == pytest.approx(RETRY_SECONDS)
        assert controller.reconcile() == pytest.approx(RETRY_SECONDS)
    assert kube.objects == {} and kube.writes == []
    assert len(events(logs, "waiting_for_images")) == 1
    lists.served[URL] = [CODE]
    clock.now += RETRY_SECONDS
    controller.reconcile()
    assert containers(kube) == [("che-code", CODE)]


def test_a_reading_the_api_refuses_keeps_the_last_good_one_and_runs_on(kube, clock, wall):
    lists = Lists({URL: [CODE]})
    controller = make(kube, clock, wall, lists)
    ready(controller, kube)
    lists.served[URL] = [CODE, UDI]
    kube.reject_dry_run = Invalid("spec.template.spec.containers[1]: Invalid value", status=422)
    wall.now += 3600
    with capture_logs() as logs:
        controller.reconcile()
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
    controller.reconcile()
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
            controller.reconcile()
    (failed,) = events(logs, "image_list_failed")
    assert failed["reason"] == "the server answered HTTP 403"
    (event,) = [e for e in kube.recorded_events if e["reason"] == "ImageListUnavailable"]
    assert "HTTP 403" in event["note"] and secret not in event["note"]
    assert containers(kube) == [("che-code", CODE)]  # its last good reading stays
