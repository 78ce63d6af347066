"""One GET of the puller's endpoints (/metrics, /healthz, /readyz) as a test reads them."""

from __future__ import annotations

import urllib.error
import urllib.request


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    """The status code and the body, for an error answer (503, 404) as for a 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()
