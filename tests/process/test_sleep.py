"""The static sleep binary that every image-holding container runs (`/kip/sleep 720h`).

It must run in images with no shell and no libc (scratch), parse Go-style durations,
reject bad input with a usage message, and exit promptly on SIGTERM, even as PID 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-sleep.sh"

PT_INTERP = 3
PT_DYNAMIC = 2


@pytest.fixture(scope="module")
def sleep_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("sleep-build") / "sleep"
    subprocess.run(["bash", str(BUILD_SCRIPT), str(out)], check=True, timeout=120)
    assert out.is_file() and os.access(out, os.X_OK)
    return out


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _catches(pid: int, *signals: signal.Signals) -> bool:
    """True once `pid` has installed handlers for `signals` (SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    line = next(x for x in status.splitlines() if x.startswith("SigCgt:"))
    caught = int(line.split()[1], 16)
    return all(caught & (1 << (int(sig) - 1)) for sig in signals)


def _program_header_types(path: Path) -> list[int]:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", "not an ELF file"
    ei_class, ei_data = data[4], data[5]
    endian = "<" if ei_data == 1 else ">"
    if ei_class == 2:  # ELF64
        e_phoff = struct.unpack_from(endian + "Q", data, 0x20)[0]
        e_phentsize, e_phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:  # ELF32
        e_phoff = struct.unpack_from(endian + "I", data, 0x1C)[0]
        e_phentsize, e_phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    assert e_phnum > 0
    return [
        struct.unpack_from(endian + "I", data, e_phoff + i * e_phentsize)[0] for i in range(e_phnum)
    ]


def test_build_script_is_idempotent(sleep_bin: Path) -> None:
    before = sleep_bin.stat().st_mtime_ns
    subprocess.run(["bash", str(BUILD_SCRIPT), str(sleep_bin)], check=True, timeout=60)
    assert sleep_bin.stat().st_mtime_ns == before, "rebuilt although the output was up to date"


def test_is_truly_static(sleep_bin: Path) -> None:
    types = _program_header_types(sleep_bin)
    assert PT_INTERP not in types, "has a program interpreter: dynamically linked"
    assert PT_DYNAMIC not in types, "has a dynamic section: needs a loader"


def test_is_small(sleep_bin: Path) -> None:
    assert sleep_bin.stat().st_size < 2 * 1024 * 1024


@pytest.mark.parametrize("duration", ["0s", "0", "0h", "0m", "0h0m0s", "0h0s"])
def test_zero_durations_return_at_once(sleep_bin: Path, duration: str) -> None:
    start = time.monotonic()
    proc = subprocess.run([str(sleep_bin), duration], capture_output=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 2
    assert proc.stderr == b""


def test_short_duration_sleeps_that_long(sleep_bin: Path) -> None:
    start = time.monotonic()
    subprocess.run([str(sleep_bin), "1s"], check=True, timeout=10)
    assert 0.9 <= time.monotonic() - start < 5


@pytest.mark.parametrize("duration", ["720h", "90m", "1h30m", "45s", "2h3m4s", "10", "1h0s"])
def test_valid_durations_keep_running(sleep_bin: Path, duration: str) -> None:
    proc = subprocess.Popen([str(sleep_bin), duration], stderr=subprocess.PIPE)
    try:
        # The handlers are installed only after the duration was parsed and accepted.
        def accepted() -> bool:
            assert proc.poll() is None, f"exited with {proc.returncode}"
            return _catches(proc.pid, signal.SIGTERM)

        _wait_until(accepted, 10, "the sleep to accept the duration")
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert err == b""


@pytest.mark.parametrize(
    "args",
    [
        [],
        [""],
        ["abc"],
        ["1h30"],  # missing unit
        ["h"],
        ["-1"],
        ["1.5h"],
        ["1d"],
        ["1m2h"],  # out of order
        ["1h1h"],  # repeated unit
        [" 1s"],
        ["1s "],
        ["99999999999999999999"],
        ["1s", "2s"],
    ],
)
def test_bad_input_prints_usage_and_fails(sleep_bin: Path, args: list[str]) -> None:
    proc = subprocess.run([str(sleep_bin), *args], capture_output=True, timeout=10)
    assert proc.returncode == 2
    assert b"usage: sleep DURATION" in proc.stderr
    assert proc.stdout == b""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_makes_it_exit_promptly(sleep_bin: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen([str(sleep_bin), "720h"])
    try:
        # Signal only once the handlers are in place (before that, the default action applies).
        _wait_until(
            lambda: proc.poll() is None and _catches(proc.pid, signal.SIGTERM, signal.SIGINT),
            10,
            "the sleep to install its signal handlers",
        )
        start = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- In an empty root: no shell, no libc, nothing but the binary -------------------------


def _need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("chroot/unshare need root")
    for tool in ("chroot", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture
def empty_root(sleep_bin: Path, tmp_path: Path) -> Path:
    _need_root_tools()
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy2(sleep_bin, root / "sleep")
    assert sorted(p.name for p in root.iterdir()) == ["sleep"]
    return root


def test_runs_in_empty_root(empty_root: Path) -> None:
    proc = subprocess.run(
        ["chroot", str(empty_root), "/sleep", "0s"], capture_output=True, timeout=10
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        ["chroot", str(empty_root), "/sleep", "nonsense"], capture_output=True, timeout=10
    )
    assert proc.returncode == 2
    assert b"usage: sleep DURATION" in proc.stderr


def test_sigterm_in_empty_root(empty_root: Path) -> None:
    proc = subprocess.Popen(["chroot", str(empty_root), "/sleep", "720h"])
    try:
        # chroot execs the program, so proc.pid is the sleep itself once it runs from the new root.
        _wait_until(
            lambda: (
                os.readlink(f"/proc/{proc.pid}/root") == os.path.realpath(empty_root)
                and os.readlink(f"/proc/{proc.pid}/exe") == os.path.realpath(empty_root / "sleep")
                and _catches(proc.pid, signal.SIGTERM)
            ),
            10,
            "the sleep to run inside the empty root",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(x) for x in text.split()]


def test_sigterm_as_pid1_in_empty_root(empty_root: Path) -> None:
    """As PID 1 of a new PID namespace, signals without a handler are ignored by the kernel."""
    try:
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", f"--root={empty_root}", "/sleep", "720h"],
            stderr=subprocess.PIPE,
        )
    except OSError as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"unshare failed: {exc}")
    try:
        child: list[int] = []

        def sleep_is_pid1() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"unshare exited: {proc.stderr.read().decode()}")
            kids = _children(proc.pid)
            if not kids:
                return False
            try:
                status = Path(f"/proc/{kids[0]}/status").read_text()
                exe = os.readlink(f"/proc/{kids[0]}/exe")
            except (FileNotFoundError, ProcessLookupError):
                return False
            nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
            # As PID 1, a signal sent before the handler is installed would be dropped.
            if (
                nspid.split()[-1] == "1"
                and exe == os.path.realpath(empty_root / "sleep")
                and _catches(kids[0], signal.SIGTERM)
            ):
                child[:] = [kids[0]]
                return True
            return False

        _wait_until(sleep_is_pid1, 10, "the sleep to run as PID 1 in a new PID namespace")
        start = time.monotonic()
        os.kill(child[0], signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 2
    finally:
        if proc.poll() is None:
            for pid in _children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
        proc.stderr.close()
