"""Forwarding questions from the gateway to one student: many requests, few calls.

Each call from the gateway to a student replica costs a few milliseconds of CPU on both sides
(Serve's routing, request bookkeeping, pickling) whatever it carries; on a 2-core machine that
is a third of the work per question when every question is its own call. A :class:`Forwarder`
(one per student model in each gateway replica) therefore sends the questions of concurrent
requests together:

* A question is sent at once while fewer than ``max_calls_in_flight`` calls are out, so a
  lightly loaded server adds no waiting; when that many are out, questions wait at the gateway
  and leave together, up to ``max_questions_per_call`` per call, as soon as a call comes back.
  Under load a call carries about as many questions as the replica decodes in one batch.
* Admission: at most ``max_admitted`` questions are waiting or in flight; past it a request is
  refused with :class:`Overloaded` (the gateway answers 503 with ``Retry-After``), whole: a
  request is never half admitted.
* Deadlines: :meth:`Forwarder.submit` waits ``timeout`` seconds at most (then
  ``asyncio.TimeoutError``: 504). A question whose request has given up is dropped before it
  is sent; a call whose every question has been given up is cancelled (the replica's work
  with it).
* An error of a call (the ``send`` coroutine raising) is the error of every request with a
  question in it.

Pure asyncio, no Ray: ``send(items) -> results`` (same length, same order) is the only link to
the student, supplied by the gateway.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable, Sequence

__all__ = ["Forwarder", "Overloaded"]


class Overloaded(Exception):
    """More questions than the forwarder admits are waiting or in flight."""


class Forwarder:
    """Coalesces the questions of concurrent requests into calls to one student (see module)."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[Sequence[Any]]], *,
                 max_questions_per_call: int, max_calls_in_flight: int, max_admitted: int):
        if min(max_questions_per_call, max_calls_in_flight, max_admitted) < 1:
            raise ValueError("the forwarder's limits must be >= 1")
        self._send = send
        self.max_questions_per_call = max_questions_per_call
        self.max_calls_in_flight = max_calls_in_flight
        self.max_admitted = max_admitted
        self._waiting: deque[tuple[Any, asyncio.Future]] = deque()
        self._calls: dict[asyncio.Task, list[asyncio.Future]] = {}
        self._admitted = 0  # questions waiting or in flight

    @property
    def admitted(self) -> int:
        """Questions waiting at the gateway or in a call now."""
        return self._admitted

    @property
    def calls_in_flight(self) -> int:
        return len(self._calls)

    async def submit(self, items: Sequence[Any], timeout: float) -> list[Any]:
        """The student's results for ``items`` (same order), within ``timeout`` seconds.

        Raises :class:`Overloaded` (nothing was admitted), ``asyncio.TimeoutError``, or the
        error of a call that carried one of the items."""
        if not items:
            return []
        if self._admitted + len(items) > self.max_admitted:
            raise Overloaded(f"{self._admitted} questions are waiting or in flight "
                             f"(at most {self.max_admitted})")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._admitted += len(items)
        self._waiting.extend(zip(items, futures))
        self._start_calls()
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()  # (wait_for's timeout has already cancelled them through gather)
                elif not f.cancelled():
                    f.exception()  # retrieved: no "exception was never retrieved" noise
            if any(f.cancelled() for f in futures):  # this request gave up
                self._cancel_abandoned_calls()

    # ------------------------------------------------------------------ internals
    def _start_calls(self) -> None:
        while self._waiting and len(self._calls) < self.max_calls_in_flight:
            batch: list[tuple[Any, asyncio.Future]] = []
            while self._waiting and len(batch) < self.max_questions_per_call:
                item, future = self._waiting.popleft()
                if future.done():  # its request gave up before it was sent
                    self._admitted -= 1
                    continue
                batch.append((item, future))
            if not batch:
                return
            task = asyncio.ensure_future(self._call(batch))
            self._calls[task] = [f for _, f in batch]

    async def _call(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the student answered {len(results)} of {len(batch)} "
                                   "questions")
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.cancel()
        except Exception as e:  # noqa: BLE001 - it is every waiting request's error
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
        finally:
            self._admitted -= len(batch)
            self._calls.pop(asyncio.current_task(), None)
            self._start_calls()

    def _cancel_abandoned_calls(self) -> None:
        for task, futures in list(self._calls.items()):
            if all(f.done() for f in futures):
                task.cancel()
