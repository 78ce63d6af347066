"""Reading API objects in tests: absent is None, any other error is raised."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException


def read_or_none(read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)``, or None when the API answers 404."""
    try:
        return read(*args)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
