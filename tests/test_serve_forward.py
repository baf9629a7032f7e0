"""The gateway's forwarder (serve/forward.py): coalescing, admission, deadlines, errors.

Pure asyncio: ``send`` is a fake student that records the calls it gets and answers when the
test lets it.
"""

from __future__ import annotations

import asyncio

import pytest

from serve.config import ServeConfig
from serve.forward import Forwarder, Overloaded


class Student:
    """Records each call's items; a call returns when :meth:`release` lets it (or at once)."""

    def __init__(self, hold: bool = True, fail: Exception | None = None):
        self.calls: list[list] = []
        self.cancelled: list[list] = []
        self.hold = hold
        self.fail = fail
        self._gate = asyncio.Event()

    def release(self) -> None:
        self._gate.set()

    async def send(self, items: list) -> list:
        self.calls.append(list(items))
        try:
            if self.hold:
                await self._gate.wait()
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled.append(list(items))
            raise
        if self.fail is not None:
            raise self.fail
        return [f"answer to {i}" for i in items]


def run(coro):
    return asyncio.run(coro)


def test_questions_wait_while_the_calls_are_out_and_leave_together():
    async def main():
        student = Student()
        fw = Forwarder(student.send, max_questions_per_call=4, max_calls_in_flight=1,
                       max_admitted=100)
        first = asyncio.ensure_future(fw.submit(["q0"], timeout=5))
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(fw.submit([f"q{i}"], timeout=5)) for i in range(1, 7)]
        await asyncio.sleep(0.01)
        assert student.calls == [["q0"]]  # the first left at once; the rest wait for it
        assert fw.admitted == 7 and fw.calls_in_flight == 1
        student.release()
        answers = [await first] + [await t for t in later]
        assert answers == [[f"answer to q{i}"] for i in range(7)]
        # after the first call: two calls of at most 4, in arrival order
        assert student.calls == [["q0"], ["q1", "q2", "q3", "q4"], ["q5", "q6"]]
        assert fw.admitted == 0 and fw.calls_in_flight == 0
    run(main())


def test_a_light_load_is_sent_at_once_and_one_request_keeps_its_order():
    async def main():
        student = Student(hold=False)
        fw = Forwarder(student.send, max_questions_per_call=8, max_calls_in_flight=2,
                       max_admitted=100)
        got = await fw.submit(["a", "b", "c"], timeout=5)
        assert got == ["answer to a", "answer to b", "answer to c"]
        assert student.calls == [["a", "b", "c"]]
        assert await fw.submit([], timeout=5) == []
    run(main())


def test_a_request_past_the_admission_limit_is_refused_whole():
    async def main():
        student = Student()
        fw = Forwarder(student.send, max_questions_per_call=2, max_calls_in_flight=1,
                       max_admitted=3)
        held = asyncio.ensure_future(fw.submit(["a", "b"], timeout=5))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await fw.submit(["c", "d"], timeout=5)  # 2 + 2 > 3: nothing of it admitted
        assert fw.admitted == 2
        fits = asyncio.ensure_future(fw.submit(["e"], timeout=5))
        await asyncio.sleep(0)
        student.release()
        assert await held == ["answer to a", "answer to b"]
        assert await fits == ["answer to e"]
        assert [q for call in student.calls for q in call] == ["a", "b", "e"]
    run(main())


def test_a_request_past_its_deadline_is_dropped_and_its_lone_call_cancelled():
    async def main():
        student = Student()
        fw = Forwarder(student.send, max_questions_per_call=4, max_calls_in_flight=1,
                       max_admitted=100)
        with pytest.raises(asyncio.TimeoutError):
            await fw.submit(["slow"], timeout=0.05)
        await asyncio.sleep(0.01)  # (the cancellation reaches the call on a later turn)
        assert student.cancelled == [["slow"]]  # nobody waits for it: the call is cancelled
        assert fw.admitted == 0 and fw.calls_in_flight == 0
        # the forwarder goes on serving
        student.release()
        assert await fw.submit(["next"], timeout=5) == ["answer to next"]
    run(main())


def test_a_call_shared_with_a_waiting_request_is_not_cancelled():
    async def main():
        student = Student()
        fw = Forwarder(student.send, max_questions_per_call=4, max_calls_in_flight=1,
                       max_admitted=100)
        blocker = asyncio.ensure_future(fw.submit(["first"], timeout=5))
        await asyncio.sleep(0)
        patient = asyncio.ensure_future(fw.submit(["patient"], timeout=5))
        hasty = asyncio.ensure_future(fw.submit(["hasty"], timeout=0.05))
        with pytest.raises(asyncio.TimeoutError):
            await hasty  # it gave up while waiting at the gateway: never sent
        student.release()
        assert await blocker == ["answer to first"]
        assert await patient == ["answer to patient"]
        assert student.calls == [["first"], ["patient"]] and student.cancelled == []
        assert fw.admitted == 0
    run(main())


def test_the_error_of_a_call_is_the_error_of_every_request_in_it():
    async def main():
        student = Student(hold=False, fail=RuntimeError("replica said no"))
        fw = Forwarder(student.send, max_questions_per_call=4, max_calls_in_flight=1,
                       max_admitted=100)
        results = await asyncio.gather(fw.submit(["a"], timeout=5), fw.submit(["b"], timeout=5),
                                       return_exceptions=True)
        assert [str(r) for r in results] == ["replica said no"] * 2
        assert fw.admitted == 0
        student.fail = None
        assert await fw.submit(["c"], timeout=5) == ["answer to c"]
    run(main())


def test_a_student_answering_the_wrong_number_of_questions_is_an_error():
    async def main():
        async def short(items):
            return items[:-1]
        fw = Forwarder(short, max_questions_per_call=4, max_calls_in_flight=1, max_admitted=9)
        with pytest.raises(RuntimeError, match="answered 1 of 2"):
            await fw.submit(["a", "b"], timeout=5)
    run(main())


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        Forwarder(Student().send, max_questions_per_call=0, max_calls_in_flight=1,
                  max_admitted=1)


@pytest.mark.parametrize("config, want", [
    # defaults: a call is one batch, one call per replica (the questions arriving while it
    # decodes leave together when it returns); 64 + 512 admitted
    ({}, {"max_questions_per_call": 32, "max_calls_in_flight": 1, "max_admitted": 576}),
    # batching off: every question is its own call, as many as a replica holds
    ({"max_batch_size": 1}, {"max_questions_per_call": 1, "max_calls_in_flight": 64,
                             "max_admitted": 576}),
    ({"replicas": 2, "max_batch_size": 8, "max_ongoing_requests": 8, "max_queued_requests": 8},
     {"max_questions_per_call": 8, "max_calls_in_flight": 2, "max_admitted": 24}),
    # autoscaling: the autoscaler must see more than its target per replica while questions wait
    ({"replicas": "auto", "autoscaling": {"max_replicas": 3, "target_ongoing_requests": 4.5}},
     {"max_questions_per_call": 32, "max_calls_in_flight": 15, "max_admitted": 704}),
])
def test_forwarding_limits_follow_the_serve_config(config, want):
    assert ServeConfig.model_validate(config).forwarding_limits() == want
