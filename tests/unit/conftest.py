import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog():
    # `imagepuller run` configures structlog to write to the (captured) stderr of its test;
    # later tests must not write to that closed stream.
    yield
    structlog.reset_defaults()
