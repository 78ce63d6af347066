"""The API wrapper: error mapping and the retry policy, with the client's calls mocked."""

from __future__ import annotations

import json
import threading
import urllib.parse
from types import SimpleNamespace

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from imagepuller.apierrors import (
    Forbidden,
    Invalid,
    KubeError,
    NamespaceTerminating,
    NotLeader,
    Stopped,
    Transient,
)
from imagepuller.apitransport import guard_writes, load_api_client
from imagepuller.kube import EVENTS_V1, LEASES, PODS, PULLERS, Kube


class Response:
    def __init__(self, status=200, body=None):
        self.status = status
        self.reason = "reason"
        self.data = json.dumps(body if body is not None else {}).encode()
        self.released = False

    def release_conn(self):
        self.released = True


class InstantStop(threading.Event):
    """A stop event whose waits return at once and are recorded (the retry backoff)."""

    def __init__(self):
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


def status(code, message):
    return {"kind": "Status", "code": code, "message": message, "reason": "x"}


class SentRequests:
    """The client's REST layer, mocked: records each request and answers with ``answer``."""

    def __init__(self, mocker):
        self.api_client = k8s.ApiClient(k8s.Configuration(host="https://api.test"))
        self.request = mocker.patch.object(self.api_client.rest_client, "request")
        self.answer(200, {})

    def answer(self, code, body=None):
        self.request.return_value = answered(code, body)

    @property
    def last(self):
        args, kwargs = self.request.call_args
        return {"method": args[0], "url": args[1], **kwargs}


@pytest.fixture
def sent(mocker):
    return SentRequests(mocker)


def answered(code, body=None):
    """What the client's REST layer returns for one answer."""
    return SimpleNamespace(response=Response(code, body))


@pytest.fixture
def raw_kube(sent):
    return Kube(sent.api_client, stop=InstantStop(), retry_for=30)


def test_returns_the_json_the_api_sent(raw_kube, sent):
    sent.answer(200, {"metadata": {"uid": "u"}})
    assert raw_kube.get_daemonset("ns", "ds") == {"metadata": {"uid": "u"}}
    assert sent.last["method"] == "GET"
    assert sent.last["url"] == "https://api.test/apis/apps/v1/namespaces/ns/daemonsets/ds"


def test_not_found_is_none(raw_kube, sent):
    sent.answer(404, status(404, "not found"))
    assert raw_kube.get_daemonset("ns", "ds") is None
    assert raw_kube.get_deployment("ns", "puller") is None
    assert sent.last["url"] == "https://api.test/apis/apps/v1/namespaces/ns/deployments/puller"


def test_pods_and_events_are_listed_by_selector(raw_kube, sent):
    sent.answer(200, {"metadata": {"resourceVersion": "7"}})  # no items: the API omits them
    assert raw_kube.list_pods("ns", "app=puller") == []
    url = urllib.parse.urlsplit(sent.last["url"])
    assert url.path == "/api/v1/namespaces/ns/pods"
    assert urllib.parse.parse_qs(url.query) == {"labelSelector": ["app=puller"]}
    sent.answer(200, {"metadata": {"resourceVersion": "8"}, "items": [{"reason": "Pulled"}]})
    assert raw_kube.list_events("ns", "involvedObject.name=ds") == [{"reason": "Pulled"}]
    url = urllib.parse.urlsplit(sent.last["url"])
    assert url.path == "/api/v1/namespaces/ns/events"
    assert urllib.parse.parse_qs(url.query) == {"fieldSelector": ["involvedObject.name=ds"]}


def test_forbidden_names_the_permission(raw_kube, sent):
    sent.answer(
        403, status(403, 'daemonsets.apps is forbidden: User "system:serviceaccount:ns:sa" cannot')
    )
    with pytest.raises(Forbidden) as caught:
        raw_kube.create_daemonset({"metadata": {"namespace": "ns", "name": "ds"}})
    assert caught.value.permission == "create daemonsets.apps in namespace ns"
    assert "system:serviceaccount:ns:sa" in str(caught.value)
    assert "Role" in str(caught.value)


def test_forbidden_from_an_api_exception(raw_kube, sent):
    sent.request.side_effect = ApiException(status=403, reason="Forbidden")
    with pytest.raises(Forbidden) as caught:
        raw_kube.delete_daemonset("ns", "ds")
    assert caught.value.permission == "delete daemonsets.apps in namespace ns"


def test_a_namespace_being_deleted_is_not_a_missing_permission(raw_kube, sent):
    # What the API answers, even to a cluster admin, in a namespace being deleted.
    sent.answer(
        403,
        {
            **status(
                403,
                'daemonsets.apps "ds" is forbidden: unable to create new content in namespace '
                "ns because it is being terminated",
            ),
            "reason": "Forbidden",
            "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata"}]},
        },
    )
    with pytest.raises(NamespaceTerminating) as caught:
        raw_kube.create_daemonset({"metadata": {"namespace": "ns", "name": "ds"}})
    assert not isinstance(caught.value, Forbidden)
    assert "namespace ns is being deleted" in str(caught.value)


def test_unprocessable_shows_the_api_message(raw_kube, sent):
    sent.answer(
        422, status(422, 'DaemonSet.apps "ds" is invalid: spec.template.spec.containers[0].name')
    )
    with pytest.raises(Invalid) as caught:
        raw_kube.create_daemonset({"metadata": {"namespace": "ns", "name": "ds"}})
    assert "spec.template.spec.containers[0].name" in str(caught.value)


@pytest.mark.parametrize(
    "affinity",
    [
        # A misspelt field and a string where a list belongs: the client's generated models
        # refuse both before sending; the API server must be the one to judge them.
        {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecutio": {}}},
        {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"x": "y"}}},
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "x"}
            }
        },
    ],
)
def test_create_sends_our_json_as_it_is_strictly_validated_by_the_server(raw_kube, sent, affinity):
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"namespace": "ns", "name": "ds"},
        "spec": {"template": {"spec": {"affinity": affinity}}},
    }
    sent.answer(
        400, status(400, 'DaemonSet in version "v1" cannot be handled: strict decoding error')
    )
    with pytest.raises(Invalid) as caught:
        raw_kube.create_daemonset(body, dry_run=True)
    assert "strict decoding error" in str(caught.value)
    request = sent.last
    assert request["method"] == "POST"
    url = urllib.parse.urlsplit(request["url"])
    assert url.path == "/apis/apps/v1/namespaces/ns/daemonsets"
    assert urllib.parse.parse_qs(url.query) == {"fieldValidation": ["Strict"], "dryRun": ["All"]}
    assert request["body"] == body
    assert request["headers"]["Content-Type"] == "application/json"


def test_create_without_dry_run_is_stored(raw_kube, sent):
    sent.answer(201, {"metadata": {"uid": "u"}})
    assert raw_kube.create_daemonset({"metadata": {"namespace": "ns", "name": "ds"}}) == {
        "metadata": {"uid": "u"}
    }
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(sent.last["url"]).query)
    assert query == {"fieldValidation": ["Strict"]}


@pytest.mark.parametrize(
    "failure",
    [
        Response(503, status(503, "unavailable")),
        Response(429, status(429, "too many requests")),
        Response(500, status(500, "etcd timeout")),
        urllib3.exceptions.MaxRetryError(None, "/apis", reason="connection refused"),
        ConnectionResetError("reset"),
    ],
)
def test_transient_failures_are_retried_with_backoff(raw_kube, sent, failure):
    # A side_effect list returns answers and raises exceptions, in order.
    if isinstance(failure, Response):
        failure = SimpleNamespace(response=failure)
    sent.request.side_effect = [
        failure,
        failure,
        answered(200, {"metadata": {"resourceVersion": "1"}}),
    ]
    assert raw_kube.list_pods("ns", "a=b") == []
    assert sent.request.call_count == 3
    assert raw_kube.stop.waits == [0.5, 1.0]  # exponential backoff between attempts


def test_retries_end_when_asked_to_stop(raw_kube, sent):
    sent.request.side_effect = ConnectionRefusedError("refused")
    raw_kube.stop.set()
    with pytest.raises(Transient):
        raw_kube.list_pods("ns", "a=b")
    assert sent.request.call_count == 1


def test_delete_is_foreground_with_a_uid_precondition(raw_kube, sent):
    assert raw_kube.delete_daemonset("ns", "ds", uid="u1") is True
    assert sent.last["method"] == "DELETE"
    assert sent.last["url"] == "https://api.test/apis/apps/v1/namespaces/ns/daemonsets/ds"
    assert sent.last["body"] == {"propagationPolicy": "Foreground", "preconditions": {"uid": "u1"}}
    sent.answer(404, status(404, "gone"))
    assert raw_kube.delete_daemonset("ns", "ds", foreground=False) is False
    assert sent.last["body"] == {"propagationPolicy": "Background"}


def test_openshift_is_detected_by_its_api_group(raw_kube, sent):
    sent.answer(200, {"groups": [{"name": "apps"}, {"name": "route.openshift.io"}]})
    assert raw_kube.is_openshift() is True
    assert sent.last["url"] == "https://api.test/apis"
    sent.answer(200, {"groups": [{"name": "apps"}]})
    assert raw_kube.is_openshift() is False


def test_missing_kubeconfig_file_is_a_clear_error(tmp_path):
    with pytest.raises(KubeError, match="KUBECONFIG=.*not a readable file"):
        load_api_client(str(tmp_path / "missing"))


def test_no_credentials_at_all_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeError, match="no Kubernetes credentials"):
        load_api_client(None)


def test_kubeconfig_client_has_no_hidden_urllib3_retries(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )
    api_client = load_api_client(str(kubeconfig))
    with api_client:
        assert api_client.configuration.host == "https://127.0.0.1:6443"
        # Only our retry policy retries; urllib3 would silently multiply connect timeouts.
        assert api_client.configuration.retries is False


@pytest.mark.parametrize("content", ["garbage: [", "just a string", "[1, 2]", "{}"])
def test_malformed_kubeconfig_is_a_message_not_a_traceback(tmp_path, content):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(content)
    with pytest.raises(KubeError, match="cannot load kubeconfig"):
        load_api_client(str(kubeconfig))


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_deadline_ends_the_retries_of_a_call_inside_a_wait(sent):
    clock = Clock()

    class AdvancingStop(InstantStop):
        def wait(self, timeout=None):
            clock.now += timeout or 0  # the backoff takes (fake) time
            return super().wait(timeout)

    kube = Kube(sent.api_client, stop=AdvancingStop(), retry_for=30, clock=clock)
    sent.request.side_effect = ConnectionRefusedError("refused")
    with pytest.raises(Transient):
        kube.list_objects(PODS, "ns", deadline=clock.now + 1)
    # Backoff 0.5 s, then 1 s: the deadline (1 s away) ends it after 3 tries, where
    # retry_for alone would have gone on for 30 s.
    assert sent.request.call_count == 3


# --- the write guard (leader election): a write leaves only while the Lease is held ---------


class Guard:
    """What the leader elector answers: None while the Lease is held, else why not."""

    def __init__(self):
        self.refusal: str | None = "the Lease ns/op was last renewed 11 s ago"
        self.asked = 0

    def __call__(self):
        self.asked += 1
        return self.refusal


MUTATIONS = {
    "create": lambda k: k.create_daemonset({"metadata": {"namespace": "ns", "name": "ds"}}),
    "dry run": lambda k: k.create_daemonset(
        {"metadata": {"namespace": "ns", "name": "ds"}}, dry_run=True
    ),
    "replace": lambda k: k.replace_daemonset({"metadata": {"namespace": "ns", "name": "ds"}}),
    "patch": lambda k: k.patch_daemonset("ns", "ds", {"metadata": {}}, uid="u"),
    "delete": lambda k: k.delete_daemonset("ns", "ds", uid="u"),
    "status": lambda k: k.merge_patch(PULLERS, "ns", "p", {"status": {}}, subresource="status"),
    "event": lambda k: k.create_object(EVENTS_V1, "ns", {"metadata": {"name": "e"}}),
    "event series": lambda k: k.merge_patch(EVENTS_V1, "ns", "e", {"series": {"count": 2}}),
    "object replace": lambda k: k.replace_object(PULLERS, "ns", "p", {"metadata": {}}),
}


@pytest.mark.parametrize("write", list(MUTATIONS.values()), ids=list(MUTATIONS))
def test_a_write_while_the_lease_is_not_held_never_reaches_the_api(raw_kube, sent, write):
    guard = Guard()
    guard_writes(sent.api_client, guard)
    with pytest.raises(NotLeader, match="not sent.*last renewed 11 s ago") as caught:
        write(raw_kube)
    assert sent.request.call_count == 0  # refused before the transport, not retried
    assert guard.asked == 1
    # Every worker loop already ends on Stopped; the operator's status and Event writers log
    # a KubeError and go on, without a traceback.
    assert isinstance(caught.value, Stopped) and isinstance(caught.value, KubeError)


def test_reads_and_watches_go_while_the_lease_is_not_held(raw_kube, sent):
    guard = Guard()
    guard_writes(sent.api_client, guard)
    sent.answer(200, {"metadata": {"resourceVersion": "7"}})
    raw_kube.get_daemonset("ns", "ds")
    raw_kube.list_pods("ns", "a=b")
    sent.answer(200, {})
    raw_kube.watch_objects(PODS, "ns", "7")
    assert [c.args[0] for c in sent.request.call_args_list] == ["GET", "GET", "GET"]
    assert guard.asked == 0


def test_writes_go_again_once_the_lease_is_held(raw_kube, sent):
    guard = Guard()
    guard_writes(sent.api_client, guard)
    with pytest.raises(NotLeader):
        raw_kube.patch_daemonset("ns", "ds", {"metadata": {}})
    guard.refusal = None  # renewed
    raw_kube.patch_daemonset("ns", "ds", {"metadata": {}})
    assert sent.request.call_count == 1 and sent.last["method"] == "PATCH"


def test_the_guard_covers_every_client_of_the_api_client_made_before_or_after(sent):
    before = Kube(sent.api_client, stop=InstantStop())
    guard_writes(sent.api_client, Guard())
    after = Kube(sent.api_client, stop=InstantStop())
    for kube in (before, after):
        with pytest.raises(NotLeader):
            kube.create_object(EVENTS_V1, "ns", {"metadata": {"name": "e"}})
    assert sent.request.call_count == 0


def test_the_lease_client_itself_is_not_guarded(sent):
    guard = Guard()
    guard_writes(sent.api_client, guard)
    lease_client = Kube(sent.api_client, stop=InstantStop(), write_guard=False)
    lease_client.replace_object(LEASES, "ns", "op", {"metadata": {}})
    lease_client.create_object(LEASES, "ns", {"metadata": {"name": "op"}})
    assert [c.args[0] for c in sent.request.call_args_list] == ["PUT", "POST"]
    assert guard.asked == 0


def test_without_a_guard_writes_go_as_before(raw_kube, sent):
    raw_kube.patch_daemonset("ns", "ds", {"metadata": {}})
    assert sent.request.call_count == 1


class Streamed:
    """A watch's response: these chunks, then the end (as a stream that broke mid-event)."""

    def __init__(self, *chunks: bytes):
        self.chunks = chunks

    def stream(self, amt=None, decode_content=False):
        yield from self.chunks

    def close(self):
        pass

    def release_conn(self):
        pass


def test_a_watch_event_cut_short_is_a_broken_watch_not_a_traceback(raw_kube):
    whole = json.dumps({"type": "ADDED", "object": {"metadata": {"name": "a"}}}).encode()
    events = raw_kube._stream_events(Streamed(whole + b"\n", b'{"type": "MODIF\n'), "pods", "ns")
    assert next(events) == ("ADDED", {"metadata": {"name": "a"}})
    with pytest.raises(Transient, match="watch of pods in ns broke: an event cut short"):
        next(events)
