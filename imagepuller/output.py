"""Writing a command's output to stdout without a traceback when stdout goes away."""

from __future__ import annotations

import errno
import io
import os
import sys
from typing import TextIO

from imagepuller import exitcodes


def write_output(text: str) -> int:
    """Write ``text`` to stdout. If it cannot be written, no traceback: a closed pipe (the reader
    has seen enough, as with `| head`) ends quietly, any other failure with one line."""
    out = sys.stdout
    if out is None:  # started with stdout closed (`>&-`)
        _cannot_write("standard output is closed")
        return exitcodes.OUTPUT
    encoding = getattr(out, "encoding", None)
    if encoding:  # what the terminal cannot show (an ASCII-only locale) is shown escaped
        text = text.encode(encoding, "backslashreplace").decode(encoding)
    try:
        _write_all(out, text)
    except BrokenPipeError:
        _discard_stdout()
        return exitcodes.OUTPUT
    except OSError as err:
        _discard_stdout()
        _cannot_write(err.strerror or str(err) or type(err).__name__)
        return exitcodes.OUTPUT
    return exitcodes.OK


def _write_all(out: TextIO, text: str) -> None:
    """Write ``text`` and flush it; raise OSError unless all of it was written.

    Unbuffered (`python -u`, PYTHONUNBUFFERED=1, as many container images set), sys.stdout
    writes straight to the descriptor and ignores a short write: when the reader of a pipe
    goes away, or a disk fills, in the middle of the output, the rest would be lost silently.
    """
    raw = getattr(out, "buffer", None)
    if not isinstance(raw, io.RawIOBase):
        out.write(text)  # buffered: the buffer writes everything or raises
        out.flush()
        return
    out.flush()
    # What the text layer would do: its own encoding, and "\n" as the platform's line end.
    data = memoryview(text.replace("\n", os.linesep).encode(out.encoding))
    while data:
        written = raw.write(data)
        if not written:  # None: a non-blocking descriptor that is full
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        data = data[written:]


def _cannot_write(reason: str) -> None:
    try:
        sys.stderr.write(f"imagepuller: cannot write output: {reason}\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass  # stderr is gone too: the exit code is all that is left


def _discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that the interpreter's final flush of what is
    still buffered succeeds instead of printing "Exception ignored ... BrokenPipeError"."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a StringIO in tests): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
