"""SR-12: every time comparison in the firmware holds across the ticks_ms wrap (2**30 ms,
12.4 days: a 28-day infusion crosses it twice).

Each scenario runs on the board's own main loop (pump.runtime.run on the fake board, every
interrupt wired to the controller, the rotation compare included, and every timer wake
1.5 s late, as on a busy board) twice: once with the tick counter far from its wrap, then
with the wrap falling at chosen instants of the run: just after a deadline (the late wake
lands past the wrap), just before one, and between a deadline and the housekeeping wake
that was computed before it (and, in a test of its own, between a motor part's end and
a rotation pulse that wakes the board before the timer: the compare path finds it due).
What the pump does must be the same ms for ms: at every wake its state, alarm, notice,
commanded and reserved volume, motor position and the frames it sent. A comparison
written as a plain subtraction instead of ticks_diff is off by 2**30 when its two ticks
straddle the wrap: a segment never ends or runs in a millisecond, a reminder comes at once
or never, telemetry floods or stops.

The deadlines and the comparisons that meet them:
- a motor segment's end: Delivery.due, Delivery.service (and its late-wake slip), the
  part's lateness and motor time (Delivery._part), the wake at the segment end
  (Controller.step, Controller.on_rotation, and the latter's due check); the monitor's
  envelope interval (Monitor._advance_env);
- the pause reminder: Controller.step (due, and its wake);
- the occlusion back-off pass: Controller.step (end, and its wake);
- telemetry and a partial frame: Protocol.poll, Protocol.wake;
- the main loop's sleep: pump.runtime.run;
- the confirm window of a proposal: Commands (test_sr12_confirm_window_across_the_wrap).
Runs on CPython and MicroPython.
"""
from fakehal import FakeHal, clinical, tmpdir

from pump import codes, commands, program
from pump.codes import CLINICIAN, PATIENT
from pump.controller import Controller
from pump.crc import crc32
from pump.hal import EV_ROTATION
from pump.runtime import Runtime, run
from pump.ticks import TICKS_PERIOD, ticks_diff

_FAR = 1 << 28                    # a run starting here does not reach the wrap for 3 days
_LATE_MS = 1500                   # every timer wake this late (past the 1 s slip limit)
_MAX_WAKES = 20000


def _frame(seq, cmd, args="{}"):
    body = ("%s %s %s" % (seq, cmd, args)).encode()
    return body + (" %08x\n" % crc32(body)).encode()


class Board:
    """The firmware on the fake board, run by its own main loop from tick `start`."""

    def __init__(self, tag, start, rate=10000):
        hal = FakeHal(tmpdir(tag), start)
        hal.compare = True
        ctl = Controller(hal)
        rt = Runtime(hal, ctl)
        hal.signal = ctl.signal              # interrupts go to the controller, as on a board
        rt.boot()
        assert ctl.request("program", CLINICIAN, clinical(1, rate)) is None
        self.hal = hal
        self.ctl = ctl
        self.rt = rt
        self.t0 = hal.t
        self.trace = []
        self.deadlines = []               # (kind, ms since the start) seen at the wakes
        self.wakes = 0
        service = rt.service

        def traced(now):
            wake = service(now)
            self._record(now)
            return wake
        rt.service = traced

    def rel(self, tick):
        """ms since the start of the run of a tick not far from now."""
        return self.hal.t - self.t0 + ticks_diff(tick, self.hal.ticks_ms())

    def _record(self, now):
        hal = self.hal
        ctl = self.ctl
        d = ctl.delivery
        p = self.rt.proto
        kinds = []
        for ln in hal.uart.take().split(b"\n"):
            if ln:
                kinds.append(ln.split(b" ")[1].decode())
        self.trace.append((hal.t - self.t0, ctl.state, ctl.alarm, ctl.notice, d.commanded_nl,
                           ctl.reserved_nl, hal.motor.position(), hal.motor.enabled(),
                           " ".join(kinds)))
        dl = self.deadlines
        if d.running:
            dl.append(("segment", self.rel(d.seg_end)))
        if d.backing_off:
            dl.append(("backoff", self.rel(d.backoff_end)))
        if ctl.state == codes.PAUSED and not ctl.pause_reminded:
            dl.append(("reminder", self.rel(ctl.pause_deadline)))
        if p.period_ms:
            dl.append(("telemetry", self.rel(p.next_tlm)))
        if p.n:
            dl.append(("partial", self.rel(p.last_rx) + p.idle_ms))

    def run(self, ms):
        """The board's main loop for `ms`: sleeps to the wake it asks for (1.5 s late) or to
        the plant's next interrupt."""
        hal = self.hal
        end = hal.t + ms

        def idle(wake):
            target = hal.t + ticks_diff(wake, hal.ticks_ms())
            target = end if target + _LATE_MS > end else target + _LATE_MS
            at = hal.next_at()
            hal.advance_to(at if at is not None and at < target else target)

        def stop():
            self.wakes += 1
            if self.wakes > _MAX_WAKES:
                self.trace.append("too many wakes")
                return True
            return hal.t >= end

        run(self.rt, idle, stop)

    def send(self, data):
        self.hal.uart.feed(data)


def _twin(scenario, kind, tag):
    """Run `scenario(board)` far from the wrap, then with the wrap at instants around each
    of the first deadlines of `kind` it met; the runs must be the same."""
    far = Board(tag + "-far", _FAR)
    scenario(far)
    assert "too many wakes" not in far.trace
    wakes = sorted(set(e[0] for e in far.trace))
    seen = []
    for k, t in far.deadlines:
        if k == kind and t not in seen and t > 5000:
            seen.append(t)
    assert seen, (kind, far.deadlines[:5])
    points = []
    for t in seen[:2]:
        points.append(t + 700)            # the late wake lands past the wrap
        points.append(t - 300)            # the wake before it, the deadline past the wrap
        before = [w for w in wakes if w < t]
        if before and before[-1] + 60000 > t + 2:
            points.append((t + before[-1] + 60000) // 2)   # a housekeeping wake past it
    for at in points:
        near = Board("%s-%d" % (tag, at), TICKS_PERIOD - at)
        scenario(near)
        assert near.trace == far.trace, (kind, at, _first_difference(near.trace, far.trace))
    return far


def _first_difference(a, b):
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    return (i, a[i] if i < len(a) else None, b[i] if i < len(b) else None)


def _running(b):
    assert b.ctl.request("start", CLINICIAN) is None
    b.run(6 * 60000)


def _paused(b):
    assert b.ctl.request("start", CLINICIAN) is None
    b.run(30000)
    assert b.ctl.request("pause", PATIENT) is None
    b.run(20 * 60000)


def _occluded(b):
    b.hal.pressure = 8
    assert b.ctl.request("start", CLINICIAN) is None
    b.run(5 * 60000)
    b.hal.occlude()
    b.run(10 * 60000)


def _telemetry(b):
    assert b.ctl.request("start", CLINICIAN) is None
    b.send(_frame(1, "WATCH", '{"period_s": 10}'))
    b.run(2 * 60000)


def _partial(b):
    b.run(61000)                          # programmed, not running: nothing else to wake for
    b.send(_frame(2, "PING")[:9])         # a frame that stops arriving
    b.run(2 * 60000)
    b.send(_frame(3, "PING"))
    b.run(60000)


def test_sr12_segments_and_the_monitor_across_the_wrap():
    far = _twin(_running, "segment", "wrap-seg")
    # the far run itself: delivering at the rate, no alarm, late wakes do not catch up
    assert far.ctl.state == codes.RUNNING and far.ctl.alarm is None
    assert far.ctl.monitor.latched is None


def test_sr12_sr14_pause_reminder_across_the_wrap():
    far = _twin(_paused, "reminder", "wrap-pause")
    reminded = [e for e in far.trace if e[3] == codes.PAUSE_TIMEOUT]
    assert reminded and 30000 + 900000 <= reminded[0][0] <= 30000 + 900000 + 2 * _LATE_MS


def test_sr12_pr3_occlusion_back_off_across_the_wrap():
    far = _twin(_occluded, "backoff", "wrap-occ")
    assert far.ctl.alarm == codes.OCCLUSION and not far.hal.motor.enabled()


def test_sr12_telemetry_across_the_wrap():
    far = _twin(_telemetry, "telemetry", "wrap-tlm")
    tlm = [e[0] for e in far.trace if "TLM" in e[8]]
    assert 10 <= len(tlm) <= 13, tlm


def test_sr12_sr13_truncated_frame_across_the_wrap():
    far = _twin(_partial, "partial", "wrap-part")
    errs = [e[0] for e in far.trace if "ERR" in e[8]]
    assert len(errs) == 1 and 61000 + 2000 <= errs[0] <= 61000 + 2000 + _LATE_MS + 1, errs
    assert "OK" in far.trace[-1][8] or [e for e in far.trace if "OK" in e[8]]


def _confirm_after(tag, start, wait_ms):
    """Propose at tick `start`, confirm `wait_ms` later: the confirm's reply."""
    hal = FakeHal(tmpdir(tag), start)
    ctl = Controller(hal)
    ctl.boot()
    door = commands.Commands(ctl)
    rx = {"drug": "blinatumomab", "weight_g": 70000, "height_mm": 1750,
          "dose_ng_per_day": 28000, "bag_hours": 24, "regimen": "r/r", "cycle": 2,
          "day_from": 1}
    label = program.make_label(rx, 270000)
    entry = {"rate": "10", "unit": "mL/h", "vtbi_ml": "240"}
    got = door.execute("PROPOSE", {"label": label, "entry": entry}, CLINICIAN, 1)
    assert isinstance(got, dict), got
    hal.t += wait_ms
    status = door.execute("STATUS", {}, CLINICIAN, 0)
    return door.execute("CONFIRM", {"echo": got["echo"]}, CLINICIAN, 2), status["proposal"]


def test_sr12_sr3_confirm_window_across_the_wrap():
    # the 120 s window: open at 50 s, closed at 130 s, wherever the wrap falls
    for before_wrap in (100000, 60000, 200000, 10):
        start = TICKS_PERIOD - before_wrap
        ok, shown = _confirm_after("wrap-ok-%d" % before_wrap, start, 50000)
        assert isinstance(ok, dict) and ok["state"] == codes.PROGRAMMED, (before_wrap, ok)
        assert shown is not None
        late, shown = _confirm_after("wrap-late-%d" % before_wrap, start, 130000)
        assert late == commands.PROPOSAL_EXPIRED, (before_wrap, late)
        assert shown is None


def _part_served_at_a_pulse(tag, start):
    """Start at tick `start`; the first part (one stroke, 18 s at 10 mL/h) ends; 5 ms later,
    before any timer wake, a rotation pulse wakes the board. What the wake did."""
    hal = FakeHal(tmpdir(tag), start)
    ctl = Controller(hal)
    rt = Runtime(hal, ctl)
    rt.boot()
    assert ctl.request("program", CLINICIAN, clinical(1, 10000)) is None
    assert ctl.request("start", CLINICIAN) is None
    t0 = hal.t
    d = ctl.delivery
    end = ticks_diff(d.seg_end, hal.ticks_ms())
    assert end == 18000 and ctl.reserved_nl == 50000
    hal.advance_to(t0 + end + 5)
    ctl.signal(EV_ROTATION)
    wake = rt.service(hal.ticks_ms())
    return (d.seg_part, ctl.reserved_nl, hal.motor.busy(), ticks_diff(wake, hal.ticks_ms()))


def test_sr12_a_part_due_when_a_pulse_wakes_the_board_across_the_wrap():
    # the wake a rotation pulse brings finds the part due: the next stroke is reserved and
    # handed to the motor there and then, far from the wrap or with the wrap (2 or 5 ms
    # before the pulse) between the part's end and the pulse
    far = _part_served_at_a_pulse("pulse-far", _FAR)
    assert far[0] == 2 and far[1] == 100000 and far[2], far
    for before in (18003, 18000):
        assert _part_served_at_a_pulse("pulse-%d" % before, TICKS_PERIOD - before) == far
