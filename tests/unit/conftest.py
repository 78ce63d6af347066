import pytest
import structlog

from imagepuller.apitime import parse_time
from tests.fakes import Clock, FakeKube


@pytest.fixture(autouse=True)
def _fresh_structlog():
    # `imagepuller run` configures structlog to write to the (captured) stderr of its test;
    # later tests must not write to that closed stream.
    yield
    structlog.reset_defaults()


# The controller's unit tests (test_controller, test_controller_lists, test_events,
# test_observability): the fake API, the monotonic clock and the wall clock they drive.
@pytest.fixture
def kube():
    return FakeKube()


@pytest.fixture
def wall():
    return Clock(parse_time("2026-11-28T20:00:00Z"))


@pytest.fixture
def clock():
    return Clock(1000.0)
