"""distill.framing, the framed-pipe protocol of the grading worker and the sandbox (host, worker
and the worker's children), over real pipes: round trips, frames arriving in pieces, EOF, the
deadline, the size cap; and the worker's bootstrap, which gets the module as source text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from distill import framing
from distill.framing import (
    HEADER,
    MAX_FRAME,
    read_exact,
    read_frame,
    read_json,
    write_all,
    write_frame,
    write_json,
)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    fds = {"r": r, "w": w}
    yield fds
    for fd in fds.values():
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def _close_writer(pipe) -> None:
    os.close(pipe["w"])
    pipe["w"] = None


def _in_thread(fn, *args) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def test_the_wire_format_is_a_big_endian_length_and_the_payload(pipe):
    write_frame(pipe["w"], b"abc")
    assert os.read(pipe["r"], 100) == b"\x00\x00\x00\x03abc"
    assert HEADER.size == 4 and MAX_FRAME == 64 << 20


@pytest.mark.parametrize("deadline", [None, 5.0])
def test_round_trip(pipe, deadline):
    until = None if deadline is None else time.monotonic() + deadline
    for payload in (b"", b"x", bytes(range(256)), bytearray(b"mutable")):
        write_frame(pipe["w"], payload)
        assert read_frame(pipe["r"], until) == bytes(payload)
    obj = {"text": "héllo ∞ \ud800", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    write_json(pipe["w"], obj)
    assert read_json(pipe["r"], until) == obj  # non-ASCII and a lone surrogate survive
    write_all(pipe["w"], b"raw bytes")
    assert read_exact(pipe["r"], 9, until) == b"raw bytes"


def test_frames_back_to_back_stay_apart(pipe):
    for i in range(50):
        write_frame(pipe["w"], str(i).encode() * i)
    assert [read_frame(pipe["r"]) for _ in range(50)] == [str(i).encode() * i for i in range(50)]


@pytest.mark.parametrize("deadline", [None, 10.0])
def test_a_frame_split_across_many_small_writes(pipe, deadline):
    payload = os.urandom(300)
    data = HEADER.pack(len(payload)) + payload

    def dribble():
        for i in range(0, len(data), 7):  # the header itself arrives in two pieces
            os.write(pipe["w"], data[i:i + 7])
            time.sleep(0.001)

    t = _in_thread(dribble)
    until = None if deadline is None else time.monotonic() + deadline
    assert read_frame(pipe["r"], until) == payload
    t.join()


def test_a_frame_larger_than_the_pipe_buffer(pipe):
    payload = os.urandom(3 << 20)  # write_all needs many writes, read_exact many reads
    t = _in_thread(write_frame, pipe["w"], payload)
    assert read_frame(pipe["r"], time.monotonic() + 30) == payload
    t.join()


@pytest.mark.parametrize("deadline", [None, 5.0])
@pytest.mark.parametrize("sent", [b"", b"\x00\x00", HEADER.pack(10), HEADER.pack(10) + b"12345"])
def test_eof_before_or_mid_frame_is_eof_error(pipe, deadline, sent):
    os.write(pipe["w"], sent)
    _close_writer(pipe)
    with pytest.raises(EOFError):
        read_frame(pipe["r"], None if deadline is None else time.monotonic() + deadline)


def test_eof_while_blocked_in_a_read(pipe):
    os.write(pipe["w"], HEADER.pack(100) + b"partial")
    t = threading.Timer(0.05, _close_writer, (pipe,))
    t.start()
    with pytest.raises(EOFError):
        read_frame(pipe["r"])
    t.join()


def test_the_deadline(pipe):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        read_frame(pipe["r"], t0 + 0.2)  # nothing comes
    assert 0.15 < time.monotonic() - t0 < 5
    os.write(pipe["w"], HEADER.pack(10) + b"12345")  # half a frame, then nothing
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        read_frame(pipe["r"], t0 + 0.2)
    assert 0.15 < time.monotonic() - t0 < 5
    with pytest.raises(TimeoutError):  # already past: no read is tried
        read_exact(pipe["r"], 1, time.monotonic() - 1)


def test_the_deadline_covers_the_whole_frame_not_each_read(pipe):
    def dribble():
        os.write(pipe["w"], HEADER.pack(40))
        for _ in range(40):  # then a byte every 20 ms: 0.8 s in all
            os.write(pipe["w"], b"x")
            time.sleep(0.02)

    t = _in_thread(dribble)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        read_frame(pipe["r"], t0 + 0.3)
    assert time.monotonic() - t0 < 0.7
    t.join()


def test_a_frame_over_the_cap_is_refused_before_its_payload_is_read(pipe):
    os.write(pipe["w"], HEADER.pack(1001))  # no payload follows: reading it would block
    with pytest.raises(ValueError, match="1001-byte frame"):
        read_frame(pipe["r"], max_size=1000)
    os.write(pipe["w"], HEADER.pack(MAX_FRAME + 1))
    with pytest.raises(ValueError):
        read_frame(pipe["r"], time.monotonic() + 5)  # the default cap
    os.write(pipe["w"], HEADER.pack(1000) + b"a" * 1000)
    assert read_frame(pipe["r"], max_size=1000) == b"a" * 1000  # the cap is inclusive
    os.write(pipe["w"], HEADER.pack(3) + b"abc")
    assert read_frame(pipe["r"], max_size=None) == b"abc"


def test_a_json_frame_that_is_not_json_is_value_error(pipe):
    write_frame(pipe["w"], b"{not json")
    with pytest.raises(ValueError):
        read_json(pipe["r"])


def test_writing_to_a_closed_pipe_is_os_error(pipe):
    os.close(pipe["r"])
    pipe["r"] = None
    with pytest.raises(OSError):  # EPIPE (SIGPIPE is ignored by Python)
        write_frame(pipe["w"], b"x")


# --------------------------------------------------------------------------------------------
# One definition: the sandbox host, its worker and grading all use distill.framing
# --------------------------------------------------------------------------------------------


def test_the_sandbox_worker_and_host_share_the_modules():
    from distill import grading
    from distill.sandbox import _worker, pool, protocol

    assert _worker.framing is framing and pool.framing is framing and grading.framing is framing
    assert _worker.protocol is protocol and pool.protocol is protocol
    for mod in (_worker, pool, grading):
        src = open(mod.__file__, encoding="utf-8").read()
        assert "struct.Struct(" not in src, mod.__name__
        # the one header spelled outside framing.py: the bootstrap's, for the first frame
        assert src.replace(pool._BOOTSTRAP, "").count("!I") == 0, mod.__name__


def test_the_bootstrap_runs_the_worker_with_framing_sent_as_source():
    """The bootstrap in a bare ``python -I -S`` (the package not importable): the modules arrive
    as source text and the worker source finds them in its globals."""
    from distill.sandbox import pool

    worker = (
        "import os\n"
        "assert 'distill' not in __import__('sys').modules\n"
        "req = framing.read_frame(0)\n"
        "i, t, m, a = protocol.REQ_HEAD.unpack_from(req)\n"
        "framing.write_json(1, {'config': CONFIG, 'id': i, 'code': req[protocol.REQ_HEAD.size:]"
        ".decode(), 'name': __name__, 'retire': protocol.RETIRE})\n"
    )
    first = pool._worker_first_frame({"k": "v"})
    assert set(first["modules"]) == {"framing", "protocol"}
    assert first["modules"]["framing"][0] == "distill/framing.py"
    first["source"] = worker
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", "-c", pool._BOOTSTRAP],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/",
                            env={"PATH": "/usr/bin:/bin"})
    try:
        write_json(proc.stdin.fileno(), first)
        write_frame(proc.stdin.fileno(), pool.protocol.REQ_HEAD.pack(7, 1.5, 64, 1) + b"ans = 1")
        got = read_json(proc.stdout.fileno(), time.monotonic() + 30)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert got == {"config": {"k": "v"}, "id": 7, "code": "ans = 1", "name": "__sandbox_worker__",
                   "retire": 0x80}
    assert proc.returncode == 0


def test_grading_frames_pickles_through_framing():
    from distill import grading

    r, w = os.pipe()
    try:
        grading._write_frame(w, ("ok", {"a": 1}))
        assert grading._read_frame(r, time.monotonic() + 5) == ("ok", {"a": 1})
        assert grading._read_frame.__module__ == "distill.grading"
        os.close(w)
        w = -1
        with pytest.raises(EOFError, match="grading worker exited"):
            grading._read_frame(r, None)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_json_payload_encoding_matches_json_dumps():
    obj = {"a": "ü", "b": [1, 2]}
    assert json.loads(framing.encode_json(obj)) == obj
    assert framing.encode_json(obj) == json.dumps(obj, ensure_ascii=False).encode()
