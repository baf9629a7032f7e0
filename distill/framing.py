"""Framed messages over pipes: the one implementation of the protocol between a host process and
the worker processes it runs (:mod:`distill.grading`'s math-verify worker, the sandbox's workers
in :mod:`distill.sandbox.pool` and, inside the sandbox, :mod:`distill.sandbox._worker` and the
children it forks).

Wire format: a frame is a 4-byte big-endian unsigned length (:data:`HEADER`) followed by that
many bytes of payload; nothing else, no terminator. What the payload holds is the caller's
business: UTF-8 JSON (:func:`read_json` / :func:`write_json`), pickles (grading) or the
sandbox's binary messages (:mod:`distill.sandbox.protocol`).

Error contract, for every reader:

* ``EOFError`` -- the pipe closed (the other end exited) before a whole frame arrived,
  including mid-frame;
* ``TimeoutError`` -- ``deadline`` (a :func:`time.monotonic` instant) passed before a whole
  frame arrived; with ``deadline=None`` a reader blocks as long as it takes;
* ``ValueError`` -- the header announces more than ``max_size`` bytes (raised before the
  payload is read), or a JSON payload is not valid JSON;
* ``OSError`` from the system calls passes through (EBADF, EPIPE on a write to a dead reader).

Writers write everything, however many ``os.write`` calls a pipe needs.

Standard library only and importing nothing from ``distill``: the sandbox worker runs where the
package is not importable, so the host sends this file's source text along with the worker's and
the worker's bootstrap executes it into a module object of its own (see
:data:`distill.sandbox.pool._BOOTSTRAP`).
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "encode_json",
    "read_exact",
    "read_frame",
    "read_json",
    "write_all",
    "write_frame",
    "write_json",
]

HEADER = struct.Struct("!I")
"""The frame header: the payload's length, 4 bytes, big-endian."""
MAX_FRAME = 64 << 20
"""The default cap on a frame's payload (64 MiB)."""


def _wait(poller, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0 or not poller.poll(left * 1000):
        raise TimeoutError


def _read_exact(fd: int, n: int, deadline: float | None, poller) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            _wait(poller, deadline)
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError("the pipe closed" + (" mid-frame" if got else ""))
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _poller(fd: int, deadline: float | None):
    if deadline is None:
        return None
    poller = select.poll()  # not select(): a big host process may hold fds above 1024
    poller.register(fd, select.POLLIN)
    return poller


def read_exact(fd: int, n: int, deadline: float | None = None) -> bytes:
    """Exactly ``n`` bytes from ``fd``: blocking reads when ``deadline`` is None, else each
    read waits (poll) only until ``deadline``. EOFError / TimeoutError as the module says."""
    return _read_exact(fd, n, deadline, _poller(fd, deadline))


def read_frame(fd: int, deadline: float | None = None,
               max_size: int | None = MAX_FRAME) -> bytes:
    """The next frame's payload (``max_size`` None: no cap). EOFError, TimeoutError, or
    ValueError when the header announces more than ``max_size`` bytes."""
    poller = _poller(fd, deadline)
    (size,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline, poller))
    if max_size is not None and size > max_size:
        raise ValueError(f"a {size}-byte frame (the limit is {max_size})")
    return _read_exact(fd, size, deadline, poller)


def read_json(fd: int, deadline: float | None = None, max_size: int | None = MAX_FRAME):
    """The next frame, parsed as JSON (see :func:`read_frame`)."""
    return json.loads(read_frame(fd, deadline, max_size))


def write_all(fd: int, data) -> None:
    """Write all of ``data`` (bytes-like) to ``fd``, however many writes it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_frame(fd: int, payload) -> None:
    """One frame: the header and ``payload`` (bytes-like)."""
    write_all(fd, HEADER.pack(len(payload)) + payload)


def encode_json(obj) -> bytes:
    """``obj`` as a JSON payload: UTF-8, non-ASCII kept as is, lone surrogates passed through
    (``surrogatepass``) rather than refused."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def write_json(fd: int, obj) -> None:
    """One frame holding ``obj`` as JSON (:func:`encode_json`)."""
    write_frame(fd, encode_json(obj))
