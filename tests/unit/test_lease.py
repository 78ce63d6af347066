"""Leader election on a Lease: who may take it over and when (judged on our own clock), and
the loop that campaigns, renews, gives up when renewals fail, and stops when asked."""

from __future__ import annotations

import copy
import json
import threading
import time
from types import SimpleNamespace

import pytest
from kubernetes import client as k8s
from structlog.testing import capture_logs

from imagepuller.apierrors import Conflict, Forbidden, NotFound, NotLeader, Transient
from imagepuller.apitime import micro_time
from imagepuller.apitransport import guard_writes
from imagepuller.kube import LEASES, PODS, Kube
from imagepuller.lease import LeaderElector

NS, NAME = "ns", "kubernetes-image-puller"
WALL0 = 1_796_000_000.0


class Clock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeKube:
    """One Lease, stored as the API would: resourceVersion bumped on every write, a PUT with a
    stale resourceVersion or a create of an existing Lease refused with Conflict."""

    def __init__(self):
        self.lease: dict | None = None
        self.version = 0
        self.fail: Exception | None = None  # raised by every call while set
        self.before_write = None  # called before a create/replace is applied (races)
        self.after_read = None  # called once a read has answered (a pause after it)
        self.writes = 0

    def get_object(self, kind, namespace, name):
        assert (kind, namespace, name) == (LEASES, NS, NAME)
        if self.fail:
            raise self.fail
        read = copy.deepcopy(self.lease)
        hook, self.after_read = self.after_read, None
        if hook:
            hook()
        return read

    def create_object(self, kind, namespace, body):
        assert (kind, namespace, body["metadata"]["name"]) == (LEASES, NS, NAME)
        self._before_write()
        if self.lease is not None:
            raise Conflict("leases.coordination.k8s.io already exists", status=409)
        return self._store(body)

    def replace_object(self, kind, namespace, name, body):
        assert (kind, namespace, name) == (LEASES, NS, NAME)
        self._before_write()
        if self.lease is None:
            raise NotFound("not found", status=404)
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", status=409)
        return self._store(body)

    def _before_write(self):
        if self.fail:
            raise self.fail
        hook, self.before_write = self.before_write, None
        if hook:
            hook()

    def _store(self, body):
        self.version += 1
        self.writes += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    def held_by(self, holder: str, *, renew_time: str, duration: int = 15, transitions: int = 0):
        """Another replica writes the Lease."""
        metadata = self.lease["metadata"] if self.lease else {"name": NAME, "namespace": NS}
        self._store(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": metadata,
                "spec": {
                    "holderIdentity": holder,
                    "leaseDurationSeconds": duration,
                    "acquireTime": micro_time(WALL0 - 7200),
                    "renewTime": renew_time,
                    "leaseTransitions": transitions,
                },
            }
        )

    @property
    def spec(self) -> dict:
        assert self.lease is not None
        return self.lease["spec"]


class FakeStop:
    """A stop event whose wait() moves the fake clock on instead of sleeping, then runs a hook
    (what the rest of the world does meanwhile)."""

    def __init__(self, clock: Clock, on_wait=None):
        self.clock = clock
        self.on_wait = on_wait
        self._set = False
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float | None = None) -> bool:
        if not self._set:
            assert timeout is not None and len(self.waits) < 1000, "run() does not end"
            self.waits.append(timeout)
            self.clock.now += timeout
            if self.on_wait:
                self.on_wait(self)
        return self._set


def elector(kube, identity="a", clock=None, wall=None, stop=None, **kwargs):
    clock = clock or Clock(100.0)
    return LeaderElector(
        kube,
        NS,
        NAME,
        identity,
        clock=clock,
        wall=wall or Clock(WALL0),
        stop=stop or FakeStop(clock),
        **kwargs,
    )


def events(logs, name):
    return [entry for entry in logs if entry["event"] == name]


# --- one attempt ---------------------------------------------------------------------------


def test_an_absent_lease_is_created_with_us_as_holder():
    kube, wall = FakeKube(), Clock(WALL0)
    a = elector(kube, wall=wall)
    with capture_logs() as logs:
        assert a.try_acquire_or_renew() is True
    assert a.is_leader
    assert kube.lease["metadata"] == {"name": NAME, "namespace": NS, "resourceVersion": "1"}
    assert kube.spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": micro_time(WALL0),
        "renewTime": micro_time(WALL0),
        "leaseTransitions": 0,
    }
    assert [entry["identity"] for entry in events(logs, "leader_elected")] == ["a"]


def test_the_holder_renews():
    kube, clock, wall = FakeKube(), Clock(100.0), Clock(WALL0)
    a = elector(kube, clock=clock, wall=wall)
    assert a.try_acquire_or_renew()
    clock.now += 2
    wall.now += 2
    with capture_logs() as logs:
        assert a.try_acquire_or_renew() is True
    assert kube.spec["renewTime"] == micro_time(WALL0 + 2)
    assert kube.spec["acquireTime"] == micro_time(WALL0)
    assert kube.spec["leaseTransitions"] == 0
    assert kube.lease["metadata"]["resourceVersion"] == "2"
    assert events(logs, "leader_elected") == []  # still the same leadership


def test_another_live_holder_keeps_it_and_we_log_waiting_once_per_holder():
    kube, clock = FakeKube(), Clock(100.0)
    kube.held_by("b", renew_time=micro_time(WALL0))
    a = elector(kube, clock=clock)
    with capture_logs() as logs:
        for _ in range(3):
            assert a.try_acquire_or_renew() is False
            clock.now += 4  # 12 s in all: shorter than the lease duration
        kube.held_by("c", renew_time=micro_time(WALL0 + 12))
        assert a.try_acquire_or_renew() is False
    assert not a.is_leader
    assert kube.spec["holderIdentity"] == "c"
    assert kube.writes == 2  # only the other replicas wrote
    assert [entry["holder"] for entry in events(logs, "leader_waiting")] == ["b", "c"]


def test_expiry_counts_from_our_first_sight_of_the_record_not_its_renew_time():
    kube, clock = FakeKube(), Clock(100.0)
    # The holder's wall clock reads an hour ago: by its renewTime it expired long since.
    kube.held_by("b", renew_time=micro_time(WALL0 - 3600))
    a = elector(kube, clock=clock)
    assert a.try_acquire_or_renew() is False  # first sight
    clock.now += 14.9
    assert a.try_acquire_or_renew() is False
    assert kube.spec["holderIdentity"] == "b"
    clock.now += 0.1  # unchanged for leaseDurationSeconds of our own time
    assert a.try_acquire_or_renew() is True
    assert kube.spec["holderIdentity"] == "a"


def test_a_holder_that_keeps_renewing_is_never_taken_over_however_skewed_its_clock():
    kube, clock = FakeKube(), Clock(100.0)
    kube.held_by("b", renew_time=micro_time(WALL0 - 86400))
    a = elector(kube, clock=clock)
    for tick in range(1, 60):  # two minutes, far longer than the lease duration
        assert a.try_acquire_or_renew() is False
        clock.now += 2
        kube.held_by("b", renew_time=micro_time(WALL0 - 86400 + 2 * tick))
    assert kube.spec["holderIdentity"] == "b"
    assert not a.is_leader


def test_a_write_that_changes_only_the_resource_version_still_counts_as_alive():
    kube, clock = FakeKube(), Clock(100.0)
    stale = micro_time(WALL0 - 3600)
    kube.held_by("b", renew_time=stale)
    a = elector(kube, clock=clock)
    for _ in range(20):
        assert a.try_acquire_or_renew() is False
        clock.now += 2
        kube.held_by("b", renew_time=stale)  # same renewTime, new resourceVersion


def test_the_lease_own_duration_decides_expiry():
    kube, clock = FakeKube(), Clock(100.0)
    kube.held_by("b", renew_time=micro_time(WALL0), duration=40)
    a = elector(kube, clock=clock)  # our own lease_duration is 15
    assert a.try_acquire_or_renew() is False
    clock.now += 39
    assert a.try_acquire_or_renew() is False
    clock.now += 1
    assert a.try_acquire_or_renew() is True


def test_a_takeover_counts_a_transition_and_sets_the_acquire_time():
    kube, clock, wall = FakeKube(), Clock(100.0), Clock(WALL0)
    kube.held_by("b", renew_time=micro_time(WALL0 - 20), duration=10, transitions=3)
    a = elector(kube, clock=clock, wall=wall)
    assert not a.try_acquire_or_renew()
    clock.now += 10
    wall.now += 10
    with capture_logs() as logs:
        assert a.try_acquire_or_renew()
    assert kube.spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": micro_time(WALL0 + 10),
        "renewTime": micro_time(WALL0 + 10),
        "leaseTransitions": 4,
    }
    assert [entry["transitions"] for entry in events(logs, "leader_elected")] == [4]


def test_of_two_candidates_taking_over_at_once_only_one_wins():
    kube, clock = FakeKube(), Clock(100.0)
    kube.held_by("b", renew_time=micro_time(WALL0), transitions=1)
    a = elector(kube, "a", clock=clock)
    c = elector(kube, "c", clock=clock)
    assert not a.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += 15
    # Between c's read and c's write, a takes the Lease over.
    kube.before_write = lambda: a.try_acquire_or_renew()
    assert c.try_acquire_or_renew() is False
    assert not c.is_leader and a.is_leader
    assert kube.spec["holderIdentity"] == "a"
    assert kube.spec["leaseTransitions"] == 2
    # Next time c sees a's fresh record: a live holder.
    assert c.try_acquire_or_renew() is False


def test_a_lease_created_by_another_replica_meanwhile_is_a_conflict_not_an_error():
    kube = FakeKube()
    a = elector(kube)
    kube.before_write = lambda: kube.held_by("b", renew_time=micro_time(WALL0))
    assert a.try_acquire_or_renew() is False
    assert kube.spec["holderIdentity"] == "b" and not a.is_leader


def test_a_released_lease_is_taken_at_once():
    kube = FakeKube()
    kube.held_by("", renew_time=micro_time(WALL0), duration=1, transitions=5)
    a = elector(kube)
    assert a.try_acquire_or_renew() is True  # first sight, no waiting
    assert kube.spec["holderIdentity"] == "a"
    assert kube.spec["leaseTransitions"] == 6


def test_an_api_error_other_than_conflict_is_raised_by_an_attempt():
    kube = FakeKube()
    kube.fail = Forbidden("no", permission="get leases.coordination.k8s.io in namespace ns")
    with pytest.raises(Forbidden):
        elector(kube).try_acquire_or_renew()


@pytest.mark.parametrize(
    "periods",
    [
        {"lease_duration": 10.0, "renew_deadline": 10.0},
        {"renew_deadline": 2.0, "retry_period": 2.0},
        {"retry_period": 0.0},
    ],
)
def test_periods_that_could_let_two_leaders_overlap_are_refused(periods):
    with pytest.raises(ValueError):
        elector(FakeKube(), **periods)


# --- run() ---------------------------------------------------------------------------------


class Callbacks:
    def __init__(self):
        self.started: list[float] = []
        self.stopped: list[float] = []


def run_until(a: LeaderElector, clock: Clock, callbacks: Callbacks) -> None:
    a.run(lambda: callbacks.started.append(clock.now), lambda: callbacks.stopped.append(clock.now))


def test_run_waits_for_the_dead_leader_then_leads_and_keeps_renewing():
    kube, clock, wall = FakeKube(), Clock(100.0), Clock(WALL0)
    kube.held_by("b", renew_time=micro_time(WALL0))  # b was SIGKILLed: never renews again

    def world(stop):
        wall.now += stop.waits[-1]
        if clock.now >= 160:
            stop.set()

    stop = FakeStop(clock, world)
    a = elector(kube, clock=clock, wall=wall, stop=stop)
    callbacks = Callbacks()
    with capture_logs() as logs:
        run_until(a, clock, callbacks)
    assert callbacks.started == [116.0]  # first sight at 100, expired 15 s later (2 s tries)
    assert callbacks.stopped == []  # a stop is not a loss
    assert a.is_leader  # the caller releases once its work has stopped
    assert set(stop.waits) == {2.0}
    assert kube.spec["holderIdentity"] == "a"
    assert kube.spec["renewTime"] == micro_time(wall.now - 2)  # renewed up to the last try
    assert kube.writes == 1 + 1 + (160 - 116) // 2 - 1  # b's, the takeover, the renewals
    assert len(events(logs, "leader_elected")) == 1
    assert len(events(logs, "leader_waiting")) == 1


def test_run_gives_up_when_renewals_fail_for_the_renew_deadline():
    kube, clock = FakeKube(), Clock(100.0)

    def world(stop):
        if clock.now == 104:
            kube.fail = Transient("connection refused")

    stop = FakeStop(clock, world)
    a = elector(kube, clock=clock, stop=stop)
    callbacks = Callbacks()
    with capture_logs() as logs:
        run_until(a, clock, callbacks)  # returns by itself: nobody sets stop
    # Last renewal at 102; failures at 104 ... 112, lost once 10 s have passed.
    assert callbacks.started == [100.0]
    assert callbacks.stopped == [112.0]
    assert not a.is_leader
    assert kube.spec["renewTime"] == micro_time(WALL0)  # the wall clock is not moved here
    assert kube.version == 2  # created, renewed once, then nothing
    (lost,) = events(logs, "leader_lost")
    assert lost["since_renewed"] == 10.0 and lost["log_level"] == "error"
    assert len(events(logs, "lease_attempt_failed")) == 5


def test_run_rides_out_failures_shorter_than_the_renew_deadline():
    kube, clock = FakeKube(), Clock(100.0)

    def world(stop):
        kube.fail = Transient("timed out") if 104 <= clock.now < 112 else None
        if clock.now >= 130:
            stop.set()

    stop = FakeStop(clock, world)
    a = elector(kube, clock=clock, stop=stop)
    callbacks = Callbacks()
    run_until(a, clock, callbacks)
    assert callbacks.started == [100.0] and callbacks.stopped == []
    assert a.is_leader
    assert kube.spec["holderIdentity"] == "a"


def test_run_stops_leading_at_once_when_another_holder_has_the_lease():
    kube, clock = FakeKube(), Clock(100.0)

    def world(stop):
        if clock.now == 106:  # an operator edited the Lease by hand, say
            kube.held_by("b", renew_time=micro_time(WALL0))

    stop = FakeStop(clock, world)
    a = elector(kube, clock=clock, stop=stop)
    callbacks = Callbacks()
    with capture_logs() as logs:
        run_until(a, clock, callbacks)
    assert callbacks.stopped == [106.0]
    assert [entry["holder"] for entry in events(logs, "leader_lost")] == ["b"]
    assert kube.spec["holderIdentity"] == "b"


def test_a_stop_ends_run_while_waiting_for_the_lease():
    kube, clock = FakeKube(), Clock(100.0)
    kube.held_by("b", renew_time=micro_time(WALL0))

    def world(stop):
        kube.held_by("b", renew_time=micro_time(WALL0 + clock.now))  # b is alive
        if clock.now >= 140:
            stop.set()

    stop = FakeStop(clock, world)
    a = elector(kube, clock=clock, stop=stop)
    callbacks = Callbacks()
    run_until(a, clock, callbacks)
    assert callbacks.started == [] and callbacks.stopped == []
    assert clock.now == 140
    assert kube.spec["holderIdentity"] == "b"


def test_a_stop_cuts_the_retry_wait_short():
    kube = FakeKube()
    kube.held_by("b", renew_time=micro_time(WALL0))
    stop = threading.Event()
    a = LeaderElector(kube, NS, NAME, "a", stop=stop)  # real clocks, 2 s retry period
    callbacks = Callbacks()
    thread = threading.Thread(target=a.run, args=(callbacks.started.append, lambda: None))
    began = time.monotonic()
    thread.start()
    time.sleep(0.05)
    stop.set()
    thread.join(timeout=1.0)
    assert not thread.is_alive()
    assert time.monotonic() - began < 1.0
    assert callbacks.started == []


def test_an_api_error_in_run_is_a_failed_attempt_not_a_crash():
    kube, clock = FakeKube(), Clock(100.0)
    kube.fail = Forbidden("no", permission="get leases.coordination.k8s.io in namespace ns")

    def world(stop):
        if clock.now >= 106:
            kube.fail = None
        if clock.now >= 110:
            stop.set()

    stop = FakeStop(clock, world)
    a = elector(kube, clock=clock, stop=stop)
    callbacks = Callbacks()
    with capture_logs() as logs:
        run_until(a, clock, callbacks)
    assert callbacks.started == [106.0]
    failed = events(logs, "lease_attempt_failed")
    assert len(failed) == 3 and failed[0]["log_level"] == "warning"


# --- release() -----------------------------------------------------------------------------


def test_release_empties_the_holder_so_a_successor_takes_over_at_once():
    kube, clock, wall = FakeKube(), Clock(100.0), Clock(WALL0)
    a = elector(kube, clock=clock, wall=wall)
    b = elector(kube, "b", clock=clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    wall.now += 5
    with capture_logs() as logs:
        a.release()
    assert not a.is_leader
    assert kube.spec["holderIdentity"] == ""
    assert kube.spec["leaseDurationSeconds"] == 1
    assert kube.spec["renewTime"] == micro_time(WALL0 + 5)
    assert len(events(logs, "lease_released")) == 1
    assert b.try_acquire_or_renew() is True  # no lease duration to wait
    assert kube.spec["holderIdentity"] == "b" and kube.spec["leaseTransitions"] == 1


def test_release_writes_nothing_when_we_do_not_hold_the_lease():
    kube = FakeKube()
    kube.held_by("b", renew_time=micro_time(WALL0))
    a = elector(kube)
    assert not a.try_acquire_or_renew()
    a.release()
    assert kube.writes == 1 and kube.spec["holderIdentity"] == "b"


def test_release_leaves_a_lease_taken_over_meanwhile_alone():
    kube, clock = FakeKube(), Clock(100.0)
    a = elector(kube, clock=clock)
    assert a.try_acquire_or_renew()
    kube.held_by("b", renew_time=micro_time(WALL0))  # a missed that it lost
    a.release()
    assert kube.spec["holderIdentity"] == "b"
    assert not a.is_leader


def test_release_logs_an_api_error_and_does_not_raise():
    kube = FakeKube()
    a = elector(kube)
    assert a.try_acquire_or_renew()
    kube.fail = Transient("connection refused")
    with capture_logs() as logs:
        a.release()
    assert kube.spec["holderIdentity"] == "a"
    assert len(events(logs, "lease_release_failed")) == 1
    assert events(logs, "lease_released") == []


# --- the write guard: no write leaves unless the Lease is known held right now --------------


class Transport:
    """A real Kube on an API client whose REST layer is mocked: what would reach the API."""

    def __init__(self, mocker, elector: LeaderElector):
        self.api_client = k8s.ApiClient(k8s.Configuration(host="https://api.test"))
        self.request = mocker.patch.object(self.api_client.rest_client, "request")
        self.request.return_value = SimpleNamespace(
            response=SimpleNamespace(
                status=200,
                reason="OK",
                data=json.dumps({"metadata": {"resourceVersion": "1"}}).encode(),
                release_conn=lambda: None,
            )
        )
        guard_writes(self.api_client, elector.refusal)
        self.kube = Kube(self.api_client, stop=threading.Event())

    def write(self) -> None:
        self.kube.patch_daemonset(NS, "cache", {"metadata": {"annotations": {"x": "1"}}})

    @property
    def methods(self) -> list[str]:
        return [call.args[0] for call in self.request.call_args_list]


def test_a_write_leaves_only_within_the_renew_deadline_of_the_last_renewal(mocker):
    lease, clock = FakeKube(), Clock(100.0)
    a = elector(lease, clock=clock)  # lease 15 s, renew deadline 10 s
    api = Transport(mocker, a)
    with pytest.raises(NotLeader, match="does not hold the Lease ns/kubernetes-image-puller"):
        api.write()  # not elected yet
    assert a.try_acquire_or_renew()
    api.write()
    clock.now = 109.9
    api.write()
    assert api.methods == ["PATCH", "PATCH"]

    clock.now = 110.0  # no renewal for the renew deadline: not known to be held any more
    with pytest.raises(
        NotLeader, match=r"last renewed the Lease .* 10\.0 s ago \(renew deadline 10 s\)"
    ):
        api.write()
    assert api.methods == ["PATCH", "PATCH"]  # the transport never saw it
    api.kube.get_daemonset(NS, "cache")  # reads and watches still go
    api.kube.list_pods(NS, "a=b")
    api.kube.watch_objects(PODS, NS, "1")
    assert api.methods == ["PATCH", "PATCH", "GET", "GET", "GET"]

    assert a.try_acquire_or_renew()  # renewed: writes go again
    api.write()
    assert api.methods[-1] == "PATCH" and len(api.methods) == 6


def test_the_deadline_counts_from_when_the_renewal_started_not_when_it_answered(mocker):
    lease, clock = FakeKube(), Clock(100.0)
    a = elector(lease, clock=clock)
    api = Transport(mocker, a)
    assert a.try_acquire_or_renew()
    clock.now = 108.0
    lease.before_write = lambda: setattr(clock, "now", clock.now + 3)  # a slow PUT
    assert a.try_acquire_or_renew()
    assert clock.now == 111.0
    api.write()
    clock.now = 118.0  # 10 s after the renewal was sent, 7 s after its answer
    with pytest.raises(NotLeader):
        api.write()
    assert api.methods == ["PATCH"]


def test_seeing_another_holder_refuses_writes_at_once(mocker):
    lease, clock = FakeKube(), Clock(100.0)
    a = elector(lease, clock=clock)
    api = Transport(mocker, a)
    assert a.try_acquire_or_renew()
    lease.held_by("b", renew_time=micro_time(WALL0))  # written by hand, say
    clock.now = 102.0
    assert not a.try_acquire_or_renew()
    with pytest.raises(NotLeader):
        api.write()
    assert api.methods == []


def test_a_released_lease_refuses_writes(mocker):
    lease = FakeKube()
    a = elector(lease)
    api = Transport(mocker, a)
    assert a.try_acquire_or_renew()
    a.release()
    with pytest.raises(NotLeader):
        api.write()
    assert api.methods == []


def test_a_leader_resumed_after_a_pause_refuses_writes_before_its_renew_loop_looks(mocker):
    """SIGSTOP past the Lease: when the process runs again, a worker thread may be first to
    run. Its write is refused on the clock alone; then the loop sees the successor and stops
    leading."""
    lease, clock = FakeKube(), Clock(100.0)
    refused_on_resume: list[bool] = []

    def world(stop):
        if clock.now == 104:
            clock.now += 20  # paused for 20 s; b took the Lease over meanwhile
            lease.held_by("b", renew_time=micro_time(WALL0 + 120), transitions=1)
            try:
                api.write()  # a worker thread, first to run again
            except NotLeader:
                refused_on_resume.append(True)

    stop = FakeStop(clock, world)
    a = elector(lease, clock=clock, stop=stop)
    api = Transport(mocker, a)
    callbacks = Callbacks()
    run_until(a, clock, callbacks)
    assert refused_on_resume == [True]
    assert callbacks.stopped == [124.0]
    assert api.methods == []


def test_a_pause_between_reading_the_lease_and_renewing_it_sends_no_renewal():
    kube, clock = FakeKube(), Clock(100.0)
    a = elector(kube, clock=clock)
    assert a.try_acquire_or_renew()
    writes = kube.writes

    def paused():  # SIGSTOP right after the GET answered, past the Lease's duration
        clock.now += 20

    kube.after_read = paused
    assert not a.try_acquire_or_renew()  # what it read may be stale: nothing is written
    assert kube.writes == writes
    assert a.refusal() is not None  # and no other write leaves either
