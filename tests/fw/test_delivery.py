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


# --- what the motor is told, rule by rule (SR-4, SR-9, PR-3) ----------------------------------

def test_sr4_the_motor_stays_within_a_step_of_the_count_at_any_calibration():
    """A calibration whose step is not a whole nL (46.008 µL a stroke) at a rate whose
    segment is not a whole number of steps: at every segment end the motor has moved
    exactly the steps the counted volume comes to, rounded down (the remainder is carried,
    never lost nor doubled): over hours, never a step ahead or behind."""
    for rate, stroke in ((610, 46008), (2500, 53992), (10000, 46008)):
        hal, d = _delivery(stroke_nl=stroke, sps=200)
        d.load(rate, 50000000, 0)
        d.start(hal.ticks_ms())
        for _ in range(120):
            hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
            d.service(hal.ticks_ms())
            if d.seg_part == 1:                   # a segment was counted and the next begun
                want = d.commanded_nl * 200 // stroke
                assert hal.motor.position() == want, (rate, stroke, d.commanded_nl)


def test_sr4_sr9_a_stop_counts_the_steps_moved_in_this_segment_rounded_up():
    """A pause in a later segment, after more than a stroke of it: the count grows by the
    volume of the steps moved since the segment began, rounded up to the nL (in doubt,
    delivered), and a second stop counts nothing more."""
    for stroke, at_ms in ((50000, 9000), (46008, 9000), (46008, 17999), (53992, 2000)):
        hal, d = _delivery(stroke_nl=stroke, sps=200)
        d.load(10000, 240000000, 0)
        d.start(hal.ticks_ms())
        while d.commanded_nl < 200000:            # two whole segments
            hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
            d.service(hal.ticks_ms())
        before = d.commanded_nl
        pos0 = hal.motor.position()
        assert before == 200000 and pos0 == 200000 * 200 // stroke
        hal.t += ticks_diff(d.seg_end, hal.ticks_ms())        # the first part moved
        d.service(hal.ticks_ms())                              # the second begins
        hal.t += at_ms
        d.stop(hal.ticks_ms())
        moved = hal.motor.position() - pos0
        assert moved > 200, (stroke, moved)       # more than one stroke into the segment
        assert d.commanded_nl - before == (moved * stroke + 199) // 200, (stroke, at_ms)
        assert not d.running and not d.due(hal.ticks_ms())
        hal.t += 60000
        d.stop(hal.ticks_ms())
        assert d.commanded_nl - before == (moved * stroke + 199) // 200


def _ends(late_ms, n=8):
    """Part ends (ms from the start) at 10 mL/h when every wake comes `late_ms` late."""
    hal, d = _delivery()
    d.load(10000, 240000000, 0)
    t0 = hal.t
    d.start(hal.ticks_ms())
    ends = []
    for _ in range(n):
        end = hal.t + ticks_diff(d.seg_end, hal.ticks_ms()) - t0
        ends.append(end)
        hal.t = t0 + end + late_ms
        d.service(hal.ticks_ms())
    return ends


def test_sr4_wakes_up_to_a_second_late_keep_the_schedule_later_ones_shift_it():
    """Wakes up to 1 s late (a busy board) keep every part on its schedule: no drift of the
    rate. Wakes more than 1 s late move what is left later by as much: the motor is never
    asked to catch up (no bolus). At 10 mL/h a part is one stroke, 18 s."""
    on_time = [18000 * (i + 1) for i in range(8)]
    for late in (0, 400, 999, 1000):
        assert _ends(late) == on_time, late
    for late in (1001, 1500, 5000):
        assert _ends(late) == [18000 * (i + 1) + i * late for i in range(8)], late


def test_pr3_back_off_volume_rounded_up_at_most_five_strokes_two_passes():
    """The back-off takes back what the line's compliance (500 nL/mmHg) holds above the
    baseline, rounded up to a step; none at 20 mmHg or less; at most 5 strokes; at most two
    passes until delivery starts again."""
    hal, d = _delivery()
    for rise, steps in ((20, 0), (21, 42), (25, 50), (26, 52), (500, 1000), (501, 1000),
                        (3000, 1000), (0, 0), (-40, 0)):
        assert d.backoff_steps(rise) == steps, (rise, d.backoff_steps(rise))
    hal2, d2 = _delivery(stroke_nl=46008)
    assert d2.backoff_steps(21) == 46             # 45.6 steps, rounded up
    d.back_off(hal.ticks_ms(), 10)
    assert d.backoff_steps(100) == 200
    d.back_off(hal.ticks_ms(), 10)
    assert d.backoff_steps(100) == 0 and d.backoff_steps(3000) == 0
    d.load(10000, 240000000, 0)
    d.start(hal.ticks_ms())
    assert d.backoff_steps(100) == 200            # a new run, two passes again
    d.stop(hal.ticks_ms())
    d.back_off(hal.ticks_ms(), 10)
    assert d.backoff_steps(100) == 200
    d.back_off(hal.ticks_ms(), 10)
    assert d.backoff_steps(100) == 0


def test_pr3_a_back_off_pass_runs_at_4_ms_a_step_and_ends_after_its_last_step():
    hal, d = _delivery()
    t0 = hal.t
    d.back_off(hal.ticks_ms(), 100)
    assert d.backing_off
    end = ticks_diff(d.backoff_end, hal.ticks_ms())
    assert end == 401
    hal.advance_to(t0 + 200)
    assert hal.motor.position() == -50            # half-way at half time: 4 ms a step
    hal.advance_to(t0 + end)
    d.end_back_off()
    assert hal.motor.position() == -100 and not d.backing_off and not hal.motor.busy()


def test_sr4_a_stopped_or_unstarted_delivery_never_moves_the_motor():
    """Whatever wakes it: a program loaded but not started, one stopped, one with nothing
    left, or at no rate: not due, nothing handed to the motor, and start says so."""
    hal, d = _delivery()
    d.load(10000, 240000000, 0)
    for t in (0, 18000, 36000, 100000):
        hal.t = t
        assert not d.running and not d.due(hal.ticks_ms())
        d.service(hal.ticks_ms())
        assert hal.motor.position() == 0 and not hal.motor.busy()
    assert d.start(hal.ticks_ms()) is True and d.running
    hal.t += 5000
    d.stop(hal.ticks_ms())
    pos = hal.motor.position()
    for t in (18000, 36000, 72000):
        hal.t += t
        assert not d.due(hal.ticks_ms())
        d.service(hal.ticks_ms())
        assert hal.motor.position() == pos and not d.running
    full = _delivery()[1]
    full.load(10000, 240000000, 240000000)         # all of it counted already
    assert full.start(0) is False and not full.running
    none = _delivery()[1]
    none.load(0, 240000000, 0)                     # no rate
    assert none.start(0) is False and not none.running


def test_calibration_outside_the_delivery_bounds_is_refused_and_named():
    for stroke, sps in ((1000, 1), (200000, 5000), (50000, 200)):
        Delivery(None, ticks_add, ticks_diff, stroke, sps)
    for stroke, sps in ((999, 200), (200001, 200), (50000, 0), (50000, 5001), (999, 0)):
        try:
            Delivery(None, ticks_add, ticks_diff, stroke, sps)
        except ValueError as exc:
            assert ("%d nL, %d steps" % (stroke, sps)) in str(exc), str(exc)
        else:
            raise AssertionError("accepted %d nL, %d steps" % (stroke, sps))


def test_sr4_a_delivery_with_no_program_has_nothing_to_deliver():
    hal, d = _delivery()
    assert d.remaining_nl() == 0 and d.commanded_nl == 0
    assert d.start(hal.ticks_ms()) is False and not d.running
    assert hal.motor.position() == 0 and not hal.motor.busy()


def test_sr4_after_a_pause_the_motor_again_follows_the_count_to_a_step():
    """Paused part-way (the count rounds the moved steps up), resumed: from the resume on,
    at every segment end the motor has moved exactly the steps the volume counted since
    comes to, rounded down."""
    for stroke in (50000, 46008):
        hal, d = _delivery(stroke_nl=stroke, sps=200)
        d.load(10000, 240000000, 0)
        d.start(hal.ticks_ms())
        hal.t += 25000
        d.stop(hal.ticks_ms())
        hal.t += 60000
        c0 = d.commanded_nl
        p0 = hal.motor.position()
        d.start(hal.ticks_ms())
        for _ in range(12):
            hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
            d.service(hal.ticks_ms())
            if d.seg_part == 1:
                want = (d.commanded_nl - c0) * 200 // stroke
                assert hal.motor.position() - p0 == want, (stroke, d.commanded_nl)


def test_sr4_the_last_segment_ends_on_the_programmed_time_to_the_ms():
    """Whatever the VTBI, delivery completes at VTBI / rate, rounded down to the ms."""
    for rate, vtbi_ul in ((3300, 1001), (10000, 1003), (600, 1007), (7777, 2000),
                          (100000, 1999)):
        hal, d = _delivery()
        d.load(rate, vtbi_ul * 1000, 0)
        _run(hal, d, ())
        assert d.commanded_nl == vtbi_ul * 1000
        assert hal.t == vtbi_ul * 3600000 // rate, (rate, vtbi_ul, hal.t)


# --- timing, the journal's reach and rounding, at their boundaries -------------------------------

def test_sr12_a_part_is_due_at_its_end_not_a_ms_before_even_across_the_wrap():
    """A wake 1 ms before a part's end (an early interrupt, the compare path) finds nothing
    due and changes nothing: the count, the part, the wake and the motor's move stay; at the
    end itself the next part begins. Far from the wrap and with the wrap inside a part."""
    for start in (0, TICKS_PERIOD - 9000, TICKS_PERIOD - 18000, TICKS_PERIOD - 1):
        hal, d = _delivery(start)
        d.load(10000, 240000000, 0)
        d.start(hal.ticks_ms())
        for _ in range(6):
            end = d.seg_end
            hal.t += ticks_diff(end, hal.ticks_ms()) - 1
            now = hal.ticks_ms()
            before = (d.seg_end, d.seg_part, d.commanded_nl, hal.motor.t0, hal.motor.steps)
            assert not d.due(now), start
            assert d.service(now) is True
            assert (d.seg_end, d.seg_part, d.commanded_nl, hal.motor.t0,
                    hal.motor.steps) == before, start
            hal.t += 1
            assert d.due(hal.ticks_ms())
            d.service(hal.ticks_ms())
            assert ticks_diff(d.seg_end, end) > 0 and hal.motor.t0 == hal.t, start


class _Ledger:
    """The write-ahead journal as delivery sees it: the volumes reserved, with the motor's
    position at each reservation (before the motor is told to move)."""

    def __init__(self, motor):
        self.motor = motor
        self.log = []

    def reserve(self, upto_nl):
        self.log.append((upto_nl, self.motor.position()))


def test_sr9_after_power_loss_an_odd_last_volume_is_reserved_a_stroke_at_a_time():
    """After a power cut the journal's count can be any nL (a reservation), so what is left
    can be a whole number of strokes and 1 nL. The last segment is still reserved one stroke
    at most ahead of what the motor has moved (a cut at any instant costs at most a stroke:
    SR-9), and the motor ends on the VTBI to a step."""
    vtbi = 240000000
    for left in (50001, 100001, 150001, 50000, 1):
        hal, d = _delivery()
        d.load(10000, vtbi, vtbi - left)
        ledger = _Ledger(hal.motor)
        d.start(hal.ticks_ms(), ledger)
        while d.running:
            hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
            d.service(hal.ticks_ms(), ledger)
        assert d.commanded_nl == vtbi
        for upto_nl, pos in ledger.log:
            ahead = upto_nl - (vtbi - left) - pos * 250
            assert 0 < ahead <= 50000, (left, upto_nl, pos, ahead)
        assert ledger.log[-1][0] == vtbi
        assert left - 250 < hal.motor.position() * 250 <= left, left


def test_sr4_a_last_segment_under_a_ms_still_moves_its_step_before_completion():
    """At 99.999 mL/h a 1 mL bag leaves 10 nL after the first 36 s segment: less than a ms of
    volume, but the step it completes (the carried remainder) is the bag's last. The segment
    lasts 1 ms, so the motor has made that step when delivery reports the VTBI reached (the
    controller drops the motor's enable at that instant), 1 ms after VTBI / rate rounded
    down; served the instant it is due, as the board's main loop does."""
    hal, d = _delivery()
    d.load(99999, 1000000, 0)
    d.start(hal.ticks_ms())
    going = True
    while going and hal.t <= 36001:
        now = hal.ticks_ms()
        if d.due(now):
            going = d.service(now)
        else:
            hal.t += ticks_diff(d.seg_end, now)
    assert not going and d.commanded_nl == 1000000
    assert hal.motor.position() == 4000           # 1 mL at 250 nL a step, all of it moved
    assert hal.t == 36000 + 1


class _MoveLog:
    """The board's motor as delivery drives it, with every move it is handed."""

    def __init__(self, motor):
        self.motor = motor
        self.moves = []

    def move(self, steps, ms):
        self.moves.append((steps, ms))
        self.motor.move(steps, ms)

    def position(self):
        return self.motor.position()

    def stop(self):
        self.motor.stop()


def test_sr4_a_part_whose_end_passed_during_a_late_wake_is_moved_in_one_ms():
    """A wake up to 1 s late keeps the schedule (no drift): a part whose end has already
    passed is handed to the motor to be moved in 1 ms, never in 0 (the board's step timer
    would run a 0 ms move at its fastest) nor later than the next ms. Here the last segment
    after a power cut: 55.556 µL at 100 mL/h, two parts of 1 s, the second served at its
    end after a wake 1 s late."""
    hal, d = _delivery()
    log = _MoveLog(hal.motor)
    d = Delivery(log, ticks_add, ticks_diff, 50000, 200)
    vtbi = 240000000
    d.load(100000, vtbi, vtbi - 55556)
    t0 = hal.t
    d.start(hal.ticks_ms())
    assert d.seg_parts == 2 and ticks_diff(d.seg_end, hal.ticks_ms()) == 1000
    hal.t = t0 + 2000                             # the first part's wake, 1 s late
    d.service(hal.ticks_ms())
    assert ticks_diff(d.seg_end, hal.ticks_ms()) == 0
    assert log.moves[-1] == (111, 1), log.moves
    hal.t += 1
    assert hal.motor.position() == 222 and not hal.motor.busy()
    assert d.service(hal.ticks_ms()) is False and d.commanded_nl == vtbi
    assert min(ms for _, ms in log.moves) >= 1


def test_sr4_a_new_delivery_reports_no_rate_and_no_volume():
    """Before any program (a pump just built or wiped), STATUS shows rate 0 µL/h, VTBI 0 and
    nothing counted, and there is nothing to start."""
    hal, d = _delivery()
    assert (d.rate_ul_per_h, d.vtbi_nl, d.commanded_nl, d.running) == (0, 0, 0, False)
    assert d.start(hal.ticks_ms()) is False


# Delivery takes any calibration within its bounds (1000..200000 nL, 1..5000 steps), not only
# the multiples of 8 nL that pump/calibration.py accepts today: its rounding must hold there
# too. 49.999 µL a stroke and 200 steps at 49.974 mL/h: the first 36 s segment ends 1 nL
# short of a whole step (499740 nL x 200 = 49999 x 1998 + 49998).

def test_sr4_the_count_rounds_steps_exactly_at_a_calibration_off_the_8_nl_grid():
    """From a new program and again after a pause, at every segment end the motor has moved
    exactly the steps the volume counted since comes to, rounded down: no remainder left
    over from before (one would add a step 1 nL early)."""
    stroke = 49999
    for pause_ms in (0, 25000):
        hal, d = _delivery(stroke_nl=stroke, sps=200)
        d.load(49974, 240000000, 0)
        d.start(hal.ticks_ms())
        if pause_ms:
            hal.t += pause_ms
            d.stop(hal.ticks_ms())
            hal.t += 60000
            d.start(hal.ticks_ms())
        c0 = d.commanded_nl
        p0 = hal.motor.position()
        ends = 0
        while ends < 4:
            hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
            d.service(hal.ticks_ms())
            if d.seg_part == 1:
                ends += 1
                want = (d.commanded_nl - c0) * 200 // stroke
                assert hal.motor.position() - p0 == want, (pause_ms, d.commanded_nl)
        assert (499740 * 200) % stroke == stroke - 1


def test_sr9_a_stop_counts_a_part_step_as_delivered_at_a_calibration_off_the_8_nl_grid():
    """At 49.999 µL a stroke and 200 steps, 199 steps are 49748.005 µL: a stop there counts
    49748.005 rounded up (in doubt, delivered: SR-9), at every stroke of the first segment."""
    stroke = 49999
    for strokes in range(0, 4):
        hal, d = _delivery(stroke_nl=stroke, sps=200)
        d.load(49974, 240000000, 0)
        d.start(hal.ticks_ms())
        target = strokes * 200 + 199
        while hal.motor.position() < target and hal.t < 36000:
            hal.t += 1
            if d.due(hal.ticks_ms()):
                d.service(hal.ticks_ms())
        assert hal.motor.position() == target
        d.stop(hal.ticks_ms())
        assert d.commanded_nl == (target * stroke + 199) // 200, (strokes, d.commanded_nl)


def test_pr3_back_off_rounded_up_to_a_step_at_a_calibration_off_the_8_nl_grid():
    """At 47.191 µL a stroke and 200 steps, a 42 mmHg rise holds 21 µL (500 nL/mmHg): 89.0002
    steps, so the back-off runs 90 (rounding down would leave a bolus for the patient)."""
    hal, d = _delivery(stroke_nl=47191, sps=200)
    assert d.backoff_steps(42) == 90
    assert (42 * 500 * 200) % 47191 == 1


def test_sr9_a_stop_one_step_into_a_segment_counts_that_step():
    """At 10 mL/h a step is made every 90 ms: a stop at the first step counts its 250 nL
    (a stop before it counts nothing), in the first segment and in a later one."""
    for later in (False, True):
        hal, d = _delivery()
        d.load(10000, 240000000, 0)
        d.start(hal.ticks_ms())
        if later:
            while d.commanded_nl < 100000:
                hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
                d.service(hal.ticks_ms())
        c0 = d.commanded_nl
        p0 = hal.motor.position()
        hal.t += 89
        assert hal.motor.position() == p0
        hal.t += 1
        assert hal.motor.position() == p0 + 1
        d.stop(hal.ticks_ms())
        assert d.commanded_nl == c0 + 250, (later, d.commanded_nl)


def test_sr4_a_motor_past_the_steps_it_was_handed_never_runs_backwards():
    """The motor's step counter jumps ahead during the first half of a 10 mL/h segment (a
    miscount: 201 or 250 steps more than the 200 it was handed, so past the second half's
    target too). The second half is handed no steps, never a move backwards; the count keeps
    its schedule, and the next segment's 400 steps run in full from where the motor is."""
    for extra in (201, 250):
        hal, d = _delivery()
        d.load(10000, 240000000, 0)
        d.start(hal.ticks_ms())
        hal.t += 9000
        hal.motor.base += extra
        hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
        assert hal.motor.position() == 200 + extra
        d.service(hal.ticks_ms())                 # the second half
        assert hal.motor.steps == 0, (extra, hal.motor.steps)
        hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
        assert hal.motor.position() == 200 + extra and d.commanded_nl == 0
        d.service(hal.ticks_ms())                 # the next segment
        assert d.commanded_nl == 100000
        for _ in range(2):
            hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
            d.service(hal.ticks_ms())
        assert hal.motor.position() == 600 + extra and d.commanded_nl == 200000, extra


def test_sr4_at_the_vtbi_delivery_reports_complete_once_and_stays_stopped():
    """1 mL at 10 mL/h: ten 36 s segments of two parts, twenty wakes. The twentieth reports
    the VTBI reached, at 360 s, with every step moved; later wakes find nothing due, move
    nothing and keep reporting complete (no further segment, not even one of no volume)."""
    hal, d = _delivery()
    d.load(10000, 1000000, 0)
    d.start(hal.ticks_ms())
    wakes = 0
    going = True
    while going and wakes < 25:
        hal.t += ticks_diff(d.seg_end, hal.ticks_ms())
        going = d.service(hal.ticks_ms())
        wakes += 1
    assert (going, wakes, hal.t) == (False, 20, 360000)
    assert d.commanded_nl == 1000000 and not d.running and d.remaining_nl() == 0
    assert hal.motor.position() == 4000
    for _ in range(3):
        hal.t += 36000
        assert not d.due(hal.ticks_ms())
        assert d.service(hal.ticks_ms()) is False
        assert d.commanded_nl == 1000000 and hal.motor.position() == 4000
