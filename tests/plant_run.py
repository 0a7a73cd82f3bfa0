"""One motion sequence through the plant, printed: the same lines on CPython and on
MicroPython (tests/test_plant_identity.py), and from the simulator's plant on a noise-free
config. Floats are printed as the hex of their IEEE bytes, so "the same" means bit for bit.

The sequence: forward and back moves, a runaway factor, the driver disabled mid-move and a
move while disabled, an occlusion to the comparator and the stall, relief and release (the
bolus), sensor dropout and a stuck sensor, the camshaft turned by hand, another slotted
disc, the door, the cassette pulled with its clamp open (free flow until the bag is empty),
an external pressure source, a battery drain to its comparator, a power cut and a reboot.

    run(hal, goto, now, out)   hal: plant.vhal.VirtualHal or sim.hal.SimHal; goto(t) runs
                               the plant's crossings up to t; now() -> ms; out(line)
"""
import struct
from binascii import hexlify

from plant import physics


def noise_table(n=64):
    """Per-stroke factors within +-3 %, from integer arithmetic (the same on both)."""
    out = []
    s = 12345
    i = 0
    while i < n:
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(1.0 + ((s % 6001) - 3000) / 100000.0)
        i += 1
    return out


def noisy_plant():
    return physics.Plant(physics.Config(), noise_table(), 1.013, (1.3, -0.7, 0.4, -1.9))


def _h(x):
    return hexlify(struct.pack("<d", x)).decode()


def snapshot(hal, t):
    p = hal.plant
    m = hal.motor
    return "at %d pos %d busy %d count %d true %d patient %s stored %s p %s bag %s dose %s " \
        "mmhg %d due %s" % (
            t, m.position(), m.busy(), hal.rotation.count(), p.true_pulses(t),
            _h(p.delivered_ul(t)), _h(p.stored_ul), _h(p.pressure_at(t)), _h(p.bag_ul),
            _h(p.dose_ug), p.pressure_mmhg(t), p.due)


def sequence(hal):
    """(t_ms, action) pairs; each action takes t."""
    p = hal.plant
    m = hal.motor
    r = hal.rotation

    def start(t):
        m.enable(True)
        m.move(2000, 10000)
        r.arm(17)

    def back(t):
        p.set_speed_factor(t, runaway=1.0)
        m.move(-600, 4000)

    def occlude(t):
        m.enable(True)
        m.move(4000, 20000)
        p.set_occluded(t, True)

    def forward_dropout(t):
        m.move(2000, 10000)
        p.set_dropout(t, 0.5)
        r.arm(r.count() + 5)

    def unstick(t):
        p.set_stuck(t, False)
        p.set_dropout(t, 0.0)

    def by_hand(t):
        p.turn(t, 37)
        p.set_slot_offsets(t, (0.5, -0.5, 1.0, -1.0))
        p.turn(t, -12)

    def pull(t):
        p.change_bag(t, 0.5, 2.0)
        p.set_cassette(t, False, True)

    def refit(t):
        p.set_cassette(t, True)
        p.change_bag(t, 10.0, 2.0)

    def source(t):
        m.move(1000, 5000)
        p.set_source(t, 350)

    def reboot(t):
        hal.power_on()
        m.enable(True)
        m.move(800, 4000)
        r.arm(5)

    return [
        (0, start),
        (3000, lambda t: p.set_speed_factor(t, runaway=3.0)),
        (5000, lambda t: r.arm(60)),
        (7000, back),
        (9000, lambda t: m.enable(False)),
        (9500, lambda t: m.move(400, 1000)),
        (10000, occlude),
        (28000, lambda t: m.move(-800, 4000)),
        (33000, lambda t: p.set_occluded(t, False)),
        (34000, forward_dropout),
        (38000, lambda t: p.set_stuck(t, True)),
        (40000, unstick),
        (41000, by_hand),
        (45000, lambda t: p.set_door(t, False)),
        (46000, lambda t: p.set_door(t, True)),
        (47000, pull),
        (70000, refit),
        (71000, source),
        (73000, lambda t: p.set_source(t, 0)),
        (75000, lambda t: p.set_battery_drain(t, 360000.0)),
        (80000, lambda t: hal.power_off()),
        (85000, reboot),
        (95000, None),
    ]


def run(hal, goto, now, out):
    def signal(flag):
        out("signal %d %d" % (now(), flag))

    hal.plant.signal = signal
    for t, action in sequence(hal):
        goto(t)
        out(snapshot(hal, t))
        if action is not None:
            action(t)
            out(snapshot(hal, t))


def main():
    from plant.vhal import VirtualHal
    hal = VirtualHal(None, plant=noisy_plant())
    run(hal, hal.advance_to, hal.clock, print)


if __name__ == "__main__":
    main()
