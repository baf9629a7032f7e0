"""The sandbox's messages between the host (:mod:`distill.sandbox.pool`) and a worker
(:mod:`distill.sandbox._worker`), carried in :mod:`distill.framing` frames. Defined here once
for both sides: the worker cannot import it (the package does not exist inside the sandbox), so
the host sends this file's source text with the worker's and the bootstrap executes it into a
module object for the worker (see :data:`distill.sandbox.pool._BOOTSTRAP`). Standard library
only; imports nothing from ``distill``.

* The first frame each way is JSON: host -> worker ``{"modules": ..., "source": ...,
  "config": ...}`` (read by the bootstrap), worker -> host ``{"hello": true, "layers": ...}``
  or ``{"fatal": reason}``.
* Then, per program, binary frames: host -> worker :data:`REQ_HEAD` + the code in UTF-8;
  worker -> host :data:`REPLY_HEAD` + body. Reply status 0: the body is the child's JSON
  report; status k > 0: the worker ended the program itself with error ``WORKER_KINDS[k]`` and
  the body is the detail (UTF-8). The :data:`RETIRE` bit on the status: the worker stopped
  after this reply and must be replaced.

Either side refuses a frame over :data:`distill.framing.MAX_FRAME` (64 MiB).
"""

from __future__ import annotations

import struct

__all__ = ["REPLY_HEAD", "REQ_HEAD", "RETIRE", "WORKER_KINDS"]

REQ_HEAD = struct.Struct("!QdIB")  # id, timeout_s, memory_mb, ast_check
REPLY_HEAD = struct.Struct("!QdB")  # id, duration_s, status
WORKER_KINDS = (None, "timeout", "memory", "runtime", "output_limit")  # reply status -> error
RETIRE = 0x80  # status bit: the worker stops after this reply and must be replaced
