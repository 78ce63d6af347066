"""A local OCI registry (distribution's ``registry``) and images made without a container engine.

There is no container engine on our machines: an image is a tar layer made here plus
``crane append --oci-empty-base`` and ``crane mutate`` (platform, entrypoint, user), pushed over
plain HTTP to the registry on 127.0.0.1. containerd reaches it through a ``certs.d`` entry that
names it as an HTTP host (see realnode.py).

Every request the registry answers is one line of its log (JSON, with method, URI and status),
so a test or benchmark can count what a node asked of it.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .process import Process


class Registry:
    """``registry serve`` on 127.0.0.1:``port``, storage and log under ``workdir``."""

    def __init__(self, binary: Path, workdir: Path, port: int):
        self.workdir = Path(workdir)
        self.host = f"127.0.0.1:{port}"
        self.config = self.workdir / "registry.yaml"
        self.log_path = self.workdir / "registry.log"
        self.process = Process(
            "registry",
            [str(binary), "serve", str(self.config)],
            self.log_path,
            # Without this, it tries to export traces to 127.0.0.1:4318 and logs each failure.
            env={"OTEL_TRACES_EXPORTER": "none", "PATH": "/usr/bin:/bin"},
        )

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "json"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host},
        }
        self.config.write_text(yaml.safe_dump(config))

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as resp:
            return bool(resp.status == 200)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The requests answered, in order, from line ``since`` of the log (see ``mark()``)."""
        out = []
        for line in self._lines()[since:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            method = entry.get("http.request.method")
            if method and "http.response.status" in entry:
                out.append(
                    {
                        "method": method,
                        "uri": entry.get("http.request.uri", ""),
                        "status": entry["http.response.status"],
                    }
                )
        return out

    def mark(self) -> int:
        """A position in the log: ``requests(since=mark)`` counts only what came after it."""
        return len(self._lines())

    def _lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []


def tar_layer(files: Mapping[str, bytes | Path], mode: int = 0o755) -> bytes:
    """A layer holding ``files`` ({path in the image: content or a local file}), owned by root,
    with their parent directories; times are zero so the same files give the same digest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories: set[str] = set()
        for name in sorted(files):
            add_parent_directories(tar, name, directories)
            content = files[name]
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name.strip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def add_parent_directories(tar: tarfile.TarFile, name: str, added: set[str]) -> None:
    """The directories above ``name`` not in ``added`` yet (owned by root, mode 755)."""
    parts = name.strip("/").split("/")
    for depth in range(1, len(parts)):
        directory = "/".join(parts[:depth])
        if directory not in added:
            added.add(directory)
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)


def push_image(
    crane: Path,
    ref: str,
    layers: list[bytes | Path],
    entrypoint: list[str] | None = None,
    cmd: list[str] | None = None,
    user: str | None = None,
) -> str:
    """Push an image of ``layers`` (tar bytes or tar files) to ``ref``; returns its digest."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [str(crane), "append", "--oci-empty-base", "--insecure", "-t", ref]
        for index, layer in enumerate(layers):
            if isinstance(layer, bytes):
                path = Path(tmp) / f"layer{index}.tar"
                path.write_bytes(layer)
                layer = path
            args += ["-f", str(layer)]
        _crane(args)
    mutate = [str(crane), "mutate", "--insecure", ref, "--set-platform", "linux/amd64", "-t", ref]
    if entrypoint:
        mutate += ["--entrypoint", ",".join(entrypoint)]
    if cmd:
        mutate += ["--cmd", ",".join(cmd)]
    if user:
        mutate += ["--user", user]
    _crane(mutate)
    return _crane([str(crane), "digest", "--insecure", ref]).strip()


def _crane(args: list[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:3])} failed: {result.stderr.strip()}")
    return result.stdout


def push_kip_image(crane: Path, ref: str, busybox: Path, sleep: Path) -> str:
    """A small KIP_IMAGE: the static sleep as /bin/sleep, and a static busybox as /bin/sh and
    /bin/cp for the init container's ``/bin/sh -c "cp /bin/sleep /kip/sleep"``."""
    layer = tar_layer({"bin/sh": busybox, "bin/cp": busybox, "bin/sleep": sleep})
    return push_image(crane, ref, [layer], user="65532:65532")


def push_data_image(crane: Path, ref: str, content: bytes) -> str:
    """An image of one data file and nothing else (no shell, no libc), as many images a
    workspace uses look to the puller: only the copied static sleep can hold it."""
    return push_image(crane, ref, [tar_layer({"data/content.txt": content}, mode=0o644)])
