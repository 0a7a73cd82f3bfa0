"""Discrete-event engine: virtual time in integer ms and a heap of timed callbacks.

A heap of [time_ms, priority, seq, callback]; `seq` comes from itertools.count(), so events
at the same time and priority run first-in first-out and a run is deterministic. Time moves
only when an event is popped (and, at the end of `run_until`, to the requested time).
A scheduled entry can be cancelled; it stays in the heap, inert, until it pops.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

# Priorities at one instant: lower runs first.
PRIO_FAULT = 0      # faults and scenario actions change the world first
PRIO_PLANT = 1      # plant crossings (rotation compare, pressure threshold, bag empty)
PRIO_WAKE = 2       # then the firmware runs
PRIO_SAMPLE = 3     # and the trace samples what it did

Entry = list  # [time_ms, priority, seq, callback or None]


class SimError(Exception):
    """Base of the simulator's exceptions."""


class Engine:
    def __init__(self, start_ms: int = 0) -> None:
        self.now = start_ms
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self.popped = 0

    def schedule(self, at_ms: int, prio: int, fn: Callable[[], object]) -> Entry:
        """Run fn() at at_ms (never in the past). Returns an entry that cancel() accepts."""
        if at_ms < self.now:
            at_ms = self.now
        entry = [at_ms, prio, next(self._seq), fn]
        heapq.heappush(self._heap, entry)
        return entry

    def after(self, delay_ms: int, prio: int, fn: Callable[[], object]) -> Entry:
        return self.schedule(self.now + delay_ms, prio, fn)

    @staticmethod
    def cancel(entry: Entry | None) -> None:
        if entry is not None:
            entry[3] = None

    def peek(self) -> int | None:
        """Time of the next live event, or None."""
        heap = self._heap
        while heap and heap[0][3] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_until(self, t_ms: int) -> None:
        """Pop and run every event due at or before t_ms, in order; then time is t_ms."""
        heap = self._heap
        pop = heapq.heappop
        n = 0
        while heap and heap[0][0] <= t_ms:
            entry = pop(heap)
            fn = entry[3]
            if fn is None:
                continue
            entry[3] = None
            self.now = entry[0]
            n += 1
            fn()
        self.popped += n
        if t_ms > self.now:
            self.now = t_ms
