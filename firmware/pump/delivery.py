"""Delivery: turns an accepted rate and VTBI into motor segments, counts commanded volume,
and enforces the VTBI (SR-4).

The motor runs continuously: delivery hands it segments of `seg_ms` (a multiple of 3.6 s),
each a whole number of steps spread evenly over the segment, and wakes at each segment's
end to hand over the next. Volumes are integer nL, rates integer µL/h, times integer ms.
In a segment of 3.6 s the volume in nL equals the rate in µL/h, so with `seg_units` =
seg_ms / 3600 a segment carries exactly rate * seg_units nL: no rounding drift at any rate.
nL are turned into motor steps with a carried remainder (Bresenham), so the motor never
runs more than one step from the commanded volume.

The final segment carries exactly the volume left to the VTBI and is shortened in time to
match the rate; when it ends, commanded volume equals the VTBI and delivery is complete.
A stop part-way through a segment counts the steps the motor really moved, rounded up
(in doubt, volume counts as delivered: SR-9).

Write-ahead, one stroke at a time (SR-9): a segment is handed to the motor in `seg_parts`
equal parts of at most one stroke each (in time and in steps), and each part's volume is
reserved in the journal (`ledger.reserve`) before the motor is told to move it. The motor
is never commanded beyond what the journal counts as delivered, and the journal never
counts more than one stroke beyond what the motor has moved: a power cut at any instant
costs at most one stroke. A part that begins more than _MAX_SLIP_MS late moves the rest of
its segment later by as much (no catching up). A motor found past the steps it was handed
(a miscount) is handed none until the schedule catches up: never a move backwards.

The occlusion back-off (PR-3) is a reverse schedule: once the monitor has stopped the pump
for an occlusion and the controller has latched the alarm, the camshaft runs backwards by
the volume the line's compliance holds above the baseline pressure (`backoff_steps`,
`back_off`), so that clearing the occlusion releases next to no bolus. It is not delivery
and is not counted; the controller enables the motor for it and tells the monitor which
pulses it may see.

Every value stays below 2**30 so the steady path allocates nothing on a 32-bit board.
"""
from pump.compat import const

_MS_PER_UNIT = const(3600)     # a 3.6 s unit: nL per unit == µL/h
SEG_UNITS = const(10)          # default segment: 36 s
# The longest the schedule may slip when a wake comes late before it restarts from now
# instead of catching up (a late wake must never turn into a burst: no bolus).
_MAX_SLIP_MS = const(1000)
_BACKOFF_MS_PER_STEP = const(4)
_BACKOFF_MAX_STROKES = const(5)
_BACKOFF_PASSES = const(2)     # a second pass when the first left the line still pressed
_RELIEVED_MMHG = const(20)     # no (further) back-off at or below this rise


class Delivery:
    def __init__(self, motor, ticks_add, ticks_diff, stroke_nl, steps_per_stroke,
                 seg_units=SEG_UNITS, compliance_nl_per_mmhg=500):
        if not (1000 <= stroke_nl <= 200000) or not (1 <= steps_per_stroke <= 5000):
            raise ValueError("bad pump calibration: %d nL, %d steps" % (stroke_nl,
                                                                        steps_per_stroke))
        self.motor = motor
        self.ticks_add = ticks_add
        self.ticks_diff = ticks_diff
        self.stroke_nl = stroke_nl
        self.steps_per_stroke = steps_per_stroke
        self.seg_units = seg_units
        self.seg_ms = seg_units * _MS_PER_UNIT
        self.compliance_nl_per_mmhg = compliance_nl_per_mmhg   # the cassette's line
        self.backing_off = False      # a back-off pass is running the camshaft backwards
        self.backoff_passes = 0       # (`back_off` sets backoff_end, read only while it runs)
        # Test hook (simulator fault `controller_rate_error`): the scheduler computes
        # rate * num / den. Never set on a board; the monitor's own copy is unaffected.
        self.fault_num = 1
        self.fault_den = 1
        self.load(0, 0, 0)

    def load(self, rate_ul_per_h, vtbi_nl, commanded_nl):
        """Take an accepted program; commanded_nl carries volume already given on it."""
        self.rate_ul_per_h = rate_ul_per_h
        self.vtbi_nl = vtbi_nl
        self.commanded_nl = commanded_nl if commanded_nl < vtbi_nl else vtbi_nl
        self.running = False
        self.step_rem = 0         # carried remainder of the nL -> steps conversion
        # The current segment (seg_*) is set by `_begin` alone, whole, before `running` can
        # be seen true, and read only while running: a stopped or completed delivery, or a
        # new program, never reads a previous segment.

    def remaining_nl(self):
        return self.vtbi_nl - self.commanded_nl

    def start(self, now, ledger=None):
        """Begin (or resume) delivery at now. Returns False when nothing is left.

        `ledger`, when given, has reserve(upto_nl): it is called with the volume the new
        segment will reach before the motor is told to move (write-ahead journal)."""
        self.backing_off = False      # a new move replaces a back-off still running
        self.backoff_passes = 0
        if self.commanded_nl >= self.vtbi_nl or self.rate_ul_per_h <= 0:
            return False
        self.running = True
        self._begin(now, now, ledger)
        return True

    def due(self, now):
        return self.running and self.ticks_diff(now, self.seg_end) >= 0

    def service(self, now, ledger=None):
        """Called at or after seg_end: begin the segment's next part, or count the segment
        and begin the next one.

        Returns True while delivery goes on, False once the VTBI is reached."""
        if not self.running or self.ticks_diff(now, self.seg_end) < 0:
            return self.running
        if self.seg_part < self.seg_parts:
            late = self.ticks_diff(now, self.seg_end)
            if late > _MAX_SLIP_MS:
                self.seg_start = self.ticks_add(self.seg_start, late)
            self._part(now, ledger)
            return True
        self.commanded_nl += self.seg_nl
        if self.commanded_nl >= self.vtbi_nl:
            self.commanded_nl = self.vtbi_nl
            self.running = False
            return False
        start = self.seg_end
        if self.ticks_diff(now, start) > _MAX_SLIP_MS:
            start = now
        self._begin(start, now, ledger)
        return True

    def stop(self, now):
        """Stop the motor (delivery or a back-off); count what it moved of the current
        segment, rounded up."""
        self.motor.stop()
        self.backing_off = False
        if not self.running:
            return
        self.running = False
        moved = self.motor.position() - self.seg_pos0
        if moved > 0:             # (nothing moved, nothing to count)
            sps = self.steps_per_stroke
            nl = ((moved // sps) * self.stroke_nl
                  + ((moved % sps) * self.stroke_nl + sps - 1) // sps)
            if nl > self.seg_nl:
                nl = self.seg_nl
            self.commanded_nl += nl
            if self.commanded_nl > self.vtbi_nl:
                self.commanded_nl = self.vtbi_nl
        self.step_rem = 0

    def backoff_steps(self, rise_mmhg):
        """Steps to run backwards for a pressure `rise_mmhg` above the baseline: the volume
        the line's compliance holds, rounded up, at most 5 strokes; 0 when the line is
        relieved (at most 20 mmHg left) or both passes of this run were made."""
        if rise_mmhg <= _RELIEVED_MMHG or self.backoff_passes >= _BACKOFF_PASSES:
            return 0
        sps = self.steps_per_stroke
        nl = rise_mmhg * self.compliance_nl_per_mmhg
        steps = (nl * sps + self.stroke_nl - 1) // self.stroke_nl
        if steps > _BACKOFF_MAX_STROKES * sps:
            steps = _BACKOFF_MAX_STROKES * sps
        return steps

    def back_off(self, now, steps):
        """One back-off pass from now: `steps` backwards at 4 ms a step (the controller has
        enabled the motor and told the monitor)."""
        ms = steps * _BACKOFF_MS_PER_STEP
        self.backoff_passes += 1
        self.motor.move(-steps, ms)
        self.backing_off = True
        self.backoff_end = self.ticks_add(now, ms + 1)

    def end_back_off(self):
        """The pass is over: the motor stops (the controller drops the enable)."""
        self.motor.stop()
        self.backing_off = False

    def _begin(self, start, now, ledger):
        rate = self.rate_ul_per_h
        nl = rate * self.seg_units
        if self.fault_num != self.fault_den:
            nl = nl * self.fault_num // self.fault_den
        left = self.vtbi_nl - self.commanded_nl
        dur = self.seg_ms
        if left < nl:
            nl = left
            # duration = left / rate hours, split so no product passes 2**30
            dur = (left // rate) * 3600 + ((left % rate) * 3600) // rate
            if dur > self.seg_ms:
                dur = self.seg_ms
            if dur < 1:
                dur = 1
        self.seg_nl = nl
        self.seg_start = start
        self.seg_dur = dur
        # nL -> steps with the carried remainder, split to stay in small ints
        s_nl = self.stroke_nl
        sps = self.steps_per_stroke
        acc = (nl % s_nl) * sps + self.step_rem
        self.seg_steps = (nl // s_nl) * sps + acc // s_nl
        self.step_rem = acc % s_nl
        # (0 parts only for a segment of no volume, under the test hook: `_part` then makes
        # its one and final part, as for 1)
        self.seg_parts = (nl + s_nl - 1) // s_nl
        self.seg_part = 0
        self.seg_pos0 = self.motor.position()
        self._part(now, ledger)

    def _part(self, now, ledger):
        """Reserve the segment's next part (write-ahead), then hand its steps to the motor."""
        j = self.seg_part + 1
        k = self.seg_parts
        self.seg_part = j
        if j >= k:
            end = self.ticks_add(self.seg_start, self.seg_dur)
            upto_nl = self.seg_nl
            upto_steps = self.seg_steps
        else:
            end = self.ticks_add(self.seg_start, self.seg_dur * j // k)
            upto_nl = (self.seg_nl * j + k - 1) // k
            upto_steps = self.seg_steps * j // k
        if ledger is not None:
            ledger.reserve(self.commanded_nl + upto_nl)
        self.seg_end = end
        steps = upto_steps - (self.motor.position() - self.seg_pos0)
        if steps < 0:
            steps = 0
        run_ms = self.ticks_diff(end, now)
        if run_ms < 1:
            run_ms = 1
        self.motor.move(steps, run_ms)
