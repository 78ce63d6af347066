"""One line naming what a benchmark ran on: Python, the Kubernetes client, CPU, cores, memory."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def describe() -> str:
    model, memory = "unknown CPU", "unknown memory"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"kubernetes client {metadata.version('kubernetes')}; {platform.machine()}, {model}, "
        f"{os.cpu_count()} cores, {memory}; {platform.system()} {platform.release()}"
    )
