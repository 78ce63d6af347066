"""The command line as a process: output into a pipe whose reader goes away, a closed stdout,
a full device, an ASCII-only terminal: one line and an exit code, never a traceback (moved out
of the unit tier from tests/unit/test_cli.py, unchanged)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagepuller.cli import EXIT_OK
from imagepuller.exitcodes import OUTPUT as EXIT_OUTPUT

ROOT = Path(__file__).resolve().parents[2]


def _images(count: int) -> str:
    return ";".join(f"i{n}=quay.io/team/i{n}" for n in range(count))


# Far more output than a pipe buffers (64 KiB), so the writer is still writing when the reader
# goes away: about 200 KiB from `render` and 120 KiB from `check`.
MANY_IMAGES = {"render": _images(300), "check": _images(4000)}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagepuller", *args]


def _env(command: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**env, "IMAGES": MANY_IMAGES[command], **extra}


def _assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err
    assert "Exception ignored" not in err


# Unbuffered, sys.stdout ignores short writes (what a pipe gives when its reader goes away).
BUFFERING = pytest.mark.parametrize(
    "buffering", [{}, {"PYTHONUNBUFFERED": "1"}], ids=["buffered", "unbuffered"]
)


@BUFFERING
@pytest.mark.parametrize("command", [["render"], ["render", "--openshift"], ["check"]])
def test_a_reader_that_stops_after_one_line_ends_the_command_quietly(command, buffering):
    with subprocess.Popen(
        _command(*command),
        cwd=ROOT,
        env=_env(command[0], **buffering),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == EXIT_OUTPUT
    assert first in (b"apiVersion: apps/v1\n", b"configuration is valid\n")
    _assert_no_traceback(err)
    assert err == ""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["render", "--help"]])
def test_help_into_a_closed_pipe_ends_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run(
            _command(*argv), cwd=ROOT, env=_env("render"), stdout=write_end, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_OUTPUT
    assert done.stderr.decode() == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@BUFFERING
@pytest.mark.parametrize("command", [["render"], ["check", "--nodes", "3"]])
def test_a_full_device_gives_one_line_and_a_non_zero_exit(command, buffering):
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            _command(*command),
            cwd=ROOT,
            env=_env(command[0], **buffering),
            stdout=full,
            stderr=subprocess.PIPE,
        )
    err = done.stderr.decode()
    assert done.returncode == EXIT_OUTPUT
    assert err == "imagepuller: cannot write output: No space left on device\n"


@pytest.mark.parametrize("command", ["render", "check"])
def test_a_closed_stdout_gives_one_line_and_a_non_zero_exit(command):
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -m imagepuller "$1" >&-', sys.executable, command],
        cwd=ROOT,
        env=_env(command),
        stderr=subprocess.PIPE,
    )
    err = done.stderr.decode()
    assert done.returncode == EXIT_OUTPUT
    assert err.startswith("imagepuller: cannot write output: ")
    assert err.count("\n") == 1
    _assert_no_traceback(err)


def test_check_on_an_ascii_only_terminal_escapes_what_it_cannot_encode():
    done = subprocess.run(
        _command("check"),
        cwd=ROOT,
        env=_env(
            "check",
            IMAGES="a=busybox",
            DAEMONSET_ANNOTATIONS='{"note": "caf\u00e9"}',
            PYTHONIOENCODING="ascii",
        ),
        capture_output=True,
    )
    _assert_no_traceback(done.stderr.decode())
    assert done.returncode == EXIT_OK
    assert b"annotations: {'note': 'caf\\xe9'}" in done.stdout
