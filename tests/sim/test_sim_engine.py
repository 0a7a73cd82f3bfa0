"""Discrete-event engine: order by time then priority, FIFO ties, cancel, determinism."""

from __future__ import annotations

import random

from sim.engine import Engine


def test_events_run_in_time_then_priority_then_fifo_order() -> None:
    e = Engine()
    log: list[tuple[int, str]] = []
    e.schedule(20, 1, lambda: log.append((e.now, "b20")))
    e.schedule(10, 2, lambda: log.append((e.now, "c10-p2")))
    e.schedule(10, 1, lambda: log.append((e.now, "a10-first")))
    e.schedule(10, 1, lambda: log.append((e.now, "a10-second")))
    e.schedule(5, 9, lambda: log.append((e.now, "z5")))
    e.run_until(100)
    assert log == [(5, "z5"), (10, "a10-first"), (10, "a10-second"), (10, "c10-p2"),
                   (20, "b20")]
    assert e.now == 100


def test_time_moves_only_to_popped_events_and_run_until_stops_at_its_bound() -> None:
    e = Engine()
    seen: list[int] = []
    e.schedule(50, 0, lambda: seen.append(e.now))
    e.schedule(150, 0, lambda: seen.append(e.now))
    e.run_until(100)
    assert seen == [50] and e.now == 100
    e.run_until(200)
    assert seen == [50, 150]


def test_events_scheduled_while_running_and_in_the_past_run_now() -> None:
    e = Engine()
    seen: list[tuple[int, str]] = []

    def first() -> None:
        seen.append((e.now, "first"))
        e.schedule(e.now, 0, lambda: seen.append((e.now, "same-time")))
        e.schedule(e.now - 5, 0, lambda: seen.append((e.now, "past")))

    e.schedule(10, 0, first)
    e.run_until(10)
    assert seen == [(10, "first"), (10, "same-time"), (10, "past")]


def test_cancelled_events_do_not_run() -> None:
    e = Engine()
    seen: list[str] = []
    a = e.schedule(10, 0, lambda: seen.append("a"))
    e.schedule(10, 0, lambda: seen.append("b"))
    Engine.cancel(a)
    assert e.peek() == 10
    e.run_until(20)
    assert seen == ["b"]
    assert e.peek() is None


def test_same_schedule_same_order_every_time() -> None:
    def trace() -> list[tuple[int, int]]:
        e = Engine()
        rng = random.Random(7)
        out: list[tuple[int, int]] = []
        for i in range(500):
            e.schedule(rng.randrange(100), rng.randrange(3), lambda i=i: out.append((e.now, i)))
        e.run_until(1000)
        return out

    a = trace()
    assert a == trace()
    assert [t for t, _ in a] == sorted(t for t, _ in a)
