"""Delivery schedule: exact volume per segment, VTBI enforced (SR-4), tick wrap (SR-12)."""
from fakehal import FakeHal, tmpdir

from pump.delivery import Delivery
from pump.ticks import TICKS_PERIOD, ticks_add, ticks_diff


def _delivery(start_ticks=0, stroke_nl=50000, sps=200):
    hal = FakeHal(tmpdir("dl"), start_ticks)
    hal.motor.enable(True)
    return hal, Delivery(hal.motor, ticks_add, ticks_diff, stroke_nl, sps)


def _run(hal, d, wakes):
    """Service d at the given virtual ms offsets (and then at each due time) to the end."""
    t0 = hal.t
    d.start(hal.ticks_ms())
    for w in wakes:
        hal.t = t0 + w
        d.service(hal.ticks_ms())
        assert d.commanded_nl <= d.vtbi_nl
    n = 0
    while d.running and n < 10000000:
        hal.t += max(1, ticks_diff(d.seg_end, hal.ticks_ms()))
        d.service(hal.ticks_ms())
        assert d.commanded_nl <= d.vtbi_nl
        n += 1


def test_sr4_reaches_vtbi_exactly_at_label_rates():
    for rate, vtbi_ml in ((10000, 240), (5000, 240), (600, 100), (2500, 240), (3300, 240),
                          (100, 1), (100000, 1000), (1800, 173)):
        hal, d = _delivery()
        d.load(rate, vtbi_ml * 1000000, 0)
        _run(hal, d, ())
        assert d.commanded_nl == d.vtbi_nl, (rate, d.commanded_nl)
        assert not d.running
        # the motor is never ahead of the commanded volume by a step, nor behind by one
        moved_nl = hal.motor.position() * 250
        assert d.vtbi_nl - 250 < moved_nl <= d.vtbi_nl, (rate, moved_nl)
        # and it took the programmed time (to the ms)
        want_ms = vtbi_ml * 1000 * 3600000 // rate
        assert abs(hal.t - want_ms) <= 1, (rate, hal.t, want_ms)


def test_sr4_random_wakes_never_exceed_vtbi():
    seed = 7
    for case in range(20):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        rate = 100 + seed % 99901
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        vtbi_ul = 1000 + seed % 50000
        hal, d = _delivery()
        d.load(rate, vtbi_ul * 1000, 0)
        wakes = []
        t = 0
        for _ in range(50):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            t += seed % 90000
            wakes.append(t)
        _run(hal, d, wakes)
        assert d.commanded_nl == d.vtbi_nl


def test_stop_counts_moved_steps_rounded_up():
    hal, d = _delivery()
    d.load(10000, 240000000, 0)
    d.start(hal.ticks_ms())
    hal.t += 12345
    d.stop(hal.ticks_ms())
    moved = hal.motor.position()
    assert moved == 400 * 12345 // 36000
    assert d.commanded_nl == moved * 250
    # a calibration whose step is not a whole nL: the count rounds up, never down
    hal, d = _delivery(stroke_nl=49999, sps=200)
    d.load(10000, 240000000, 0)
    d.start(hal.ticks_ms())
    hal.t += 1000
    d.stop(hal.ticks_ms())
    moved = hal.motor.position()
    assert d.commanded_nl * 200 >= moved * 49999
    assert d.commanded_nl * 200 < moved * 49999 + 200


def test_late_wake_does_not_catch_up():
    """A late wake never turns into a burst: what is left keeps its own duration from now.
    At 10 mL/h a 36 s segment goes to the motor in two parts of one stroke, 18 s each."""
    hal, d = _delivery()
    d.load(10000, 240000000, 0)
    d.start(hal.ticks_ms())
    assert d.seg_parts == 2 and ticks_diff(d.seg_end, hal.ticks_ms()) == 18000
    hal.t += 36000 + 5000           # 23 seconds late for the second part
    assert hal.motor.position() == 200        # the motor stopped where its part ended
    d.service(hal.ticks_ms())
    assert ticks_diff(d.seg_end, hal.ticks_ms()) == 18000   # from now, no burst
    hal.t += 18000
    d.service(hal.ticks_ms())
    assert d.commanded_nl == 100000 and hal.motor.position() == 400
    assert ticks_diff(d.seg_end, hal.ticks_ms()) == 18000   # the next segment, from now


def _segment_starts(start_ticks, hours):
    hal, d = _delivery(start_ticks)
    d.load(600, 100800000, 0)
    d.start(hal.ticks_ms())
    t0 = hal.t
    starts = []
    while d.running and hal.t - t0 < hours * 3600000:
        hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
        d.service(hal.ticks_ms())
        starts.append((hal.t - t0, d.seg_nl, d.commanded_nl))
    return starts


def test_sr12_schedule_exact_across_tick_wrap():
    near_wrap = _segment_starts(TICKS_PERIOD - 60000, 2)
    at_zero = _segment_starts(0, 2)
    assert len(near_wrap) == len(at_zero) == 200
    assert near_wrap == at_zero
