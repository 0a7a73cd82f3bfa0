// The emulated RP2040 (npm rp2040js 1.4.x) running the official MicroPython UF2, with the
// fixes a harness needs around that emulator (../shared/rp2/README.md lists them):
//
//   1. flash writes: the SSI model ignores them, so the boot ROM's flash_range_erase ('RE')
//      and flash_range_program ('RP') are done here, on the emulated flash: each is patched
//      with a BKPT that this module serves and returns from (littlefs then works);
//   2. USB OUT: an armed OUT transfer completes only when the host has bytes queued (a real
//      host NAKs), so an idle firmware sleeps in WFE instead of re-arming in a storm;
//   3. UART: the TX interrupt is raised only when a byte was written, not on every check;
//   4. watchdog: its alarm is disarmed when it fires (rp2040js re-arms it with a zero delay
//      and would fire for ever inside one clock tick);
//   5. a watchdog reset or machine.reset() becomes a fresh chip with the same flash and the
//      watchdog's REASON and SCRATCH registers (the USB side enumerates again);
//   6. host -> device bytes wait in a queue here (back-pressure) instead of being dropped by
//      rp2040js's 512-byte CDC FIFO.
// Three more facts of rp2040js handled here: a pin driven as an output reads back its own
// level (the pad's input buffer sees it on silicon; rp2040js reads only what JavaScript set,
// so machine.Pin.value() of an output would always read 0); the boot ROM's power-on path cannot read flash
// through the SSI model, so the core starts at the flash's second-stage loader (0x10000000)
// with the ROM mapped for its function tables; and VREG_AND_CHIP_RESET is not modelled (the
// ROM would read 0xffffffff and wait for a debugger), so a small model of it is put in.
//
//   const chip = new Chip({ uf2: bytes, bootrom: bytes });      // or { flash: image, ... }
//   chip.onSerial = (bytes) => ...;  chip.serialWrite(bytes);
//   chip.run(untilNanos, wallDeadlineMs);  chip.nanos
//
// GPIO: chip.mcu.gpio[n] (rp2040js GPIOPin: addListener, setInputValue); ADC: chip.onAdc.

import path from "node:path";
import { pathToFileURL } from "node:url";

// rp2040js from the project's node_modules (package.json pins it); RP2040JS=<package dir>
// points at another copy.
const where = process.env.RP2040JS
    ? pathToFileURL(path.join(process.env.RP2040JS, "dist", "esm", "index.js")).href
    : "rp2040js";
const { BasePeripheral, ConsoleLogger, LogLevel, RP2040, USBCDC } = await import(where);

export const FLASH_SIZE = 2 * 1024 * 1024;     // the Pico's W25Q16: 2 MiB
const FLASH_BASE = 0x10000000;
const NS_PER_CYCLE = 8;                        // 125 MHz, MicroPython's clk_sys on the RP2040
const BKPT_ERASE = 0xbe7e;                     // BKPT #0x7e / #0x7f: the patched ROM entries
const BKPT_PROGRAM = 0xbe7f;
const VREG_BASE = 0x40064;                     // peripheral index of VREG_AND_CHIP_RESET
const CHIP_RESET_HAD_POR = 1 << 8;
const WATCHDOG_BASE = 0x40058;
const UARTTXINTR = 1 << 5;

/** A one-shot alarm of Clock (the IAlarm of rp2040js: schedule(deltaNanos), cancel()). */
class Alarm {
    constructor(clock, callback) {
        this.clock = clock;
        this.callback = callback;
        this.nanos = 0;
        this.next = null;
        this.scheduled = false;
    }

    schedule(deltaNanos) {
        this.clock._unlink(this);
        this.nanos = this.clock.nanos + deltaNanos;
        this.clock._link(this);
    }

    cancel() {
        this.clock._unlink(this);
    }
}

/**
 * The chip's time base: nanoseconds, alarms in a list sorted by due time (ties in the order
 * they were scheduled). It may start at any count (the TIMER's value at power-on).
 */
export class Clock {
    constructor(startNanos = 0) {
        this.nanos = startNanos;
        this.nextAlarm = null;
    }

    createAlarm(callback) {
        return new Alarm(this, callback);
    }

    _link(alarm) {
        let prev = null;
        let a = this.nextAlarm;
        while (a && a.nanos <= alarm.nanos) {
            prev = a;
            a = a.next;
        }
        alarm.next = a;
        if (prev) prev.next = alarm;
        else this.nextAlarm = alarm;
        alarm.scheduled = true;
    }

    _unlink(alarm) {
        if (!alarm.scheduled) return;
        let prev = null;
        let a = this.nextAlarm;
        while (a && a !== alarm) {
            prev = a;
            a = a.next;
        }
        if (a) {
            if (prev) prev.next = a.next;
            else this.nextAlarm = a.next;
        }
        alarm.next = null;
        alarm.scheduled = false;
    }

    /** Advance by deltaNanos, firing every alarm due on the way at its own time. */
    tick(deltaNanos) {
        const target = this.nanos + deltaNanos;
        let a = this.nextAlarm;
        while (a && a.nanos <= target) {
            this.nextAlarm = a.next;
            a.next = null;
            a.scheduled = false;
            if (a.nanos > this.nanos) this.nanos = a.nanos;
            a.callback();
            a = this.nextAlarm;
        }
        this.nanos = target;
    }

    get nanosToNextAlarm() {
        return this.nextAlarm ? this.nextAlarm.nanos - this.nanos : 0;
    }
}

/** The RP2040's VREG_AND_CHIP_RESET block: what the boot ROM and the SDK read at reset. */
class VregAndChipReset extends BasePeripheral {
    constructor(rp2040, chipReset) {
        super(rp2040, "VREG_AND_CHIP_RESET");
        this.vreg = 0xb1;          // VREG: enabled, 1.10 V (the reset value)
        this.bod = 0x91;           // BOD: enabled, 0.86 V
        this.chipReset = chipReset;
    }

    readUint32(offset) {
        if (offset === 0) return this.vreg;
        if (offset === 4) return this.bod;
        if (offset === 8) return this.chipReset;
        return 0;
    }

    writeUint32(offset, value) {
        if (offset === 0) this.vreg = value;
        else if (offset === 4) this.bod = value;
        else if (offset === 8) this.chipReset &= ~(value & (1 << 24));  // PSM_RESTART_FLAG: write 1 to clear
    }
}

/** An output pin's input is its own level (the pad's input buffer), an input's what is
 * applied to it (setInputValue). */
function readBack(pin) {
    const proto = Object.getPrototypeOf(pin);
    const applied = Object.getOwnPropertyDescriptor(proto, "inputValue").get;
    Object.defineProperty(pin, "inputValue", {
        get() {
            if (this.outputEnable) return this.outputValue && this.inputEnable;
            return applied.call(this);
        },
    });
}

/** UF2 blocks -> flash bytes (offsets from 0x10000000). Throws on anything that is not UF2. */
export function loadUf2(flash, uf2) {
    if (uf2.length === 0 || uf2.length % 512) {
        throw new Error(`not a UF2 file (${uf2.length} bytes, not a multiple of 512)`);
    }
    const dv = new DataView(uf2.buffer, uf2.byteOffset, uf2.length);
    let blocks = 0;
    for (let off = 0; off < uf2.length; off += 512) {
        if (dv.getUint32(off, true) !== 0x0a324655 || dv.getUint32(off + 4, true) !== 0x9e5d5157) {
            throw new Error(`not a UF2 file (bad magic in block ${off / 512})`);
        }
        const addr = dv.getUint32(off + 12, true);
        const size = dv.getUint32(off + 16, true);
        if (addr < FLASH_BASE || addr + size > FLASH_BASE + flash.length || size > 476) {
            throw new Error(`UF2 block ${off / 512} targets 0x${addr.toString(16)}: not the Pico's flash`);
        }
        flash.set(uf2.subarray(off + 32, off + 32 + size), addr - FLASH_BASE);
        blocks += 1;
    }
    return blocks;
}

/** The boot ROM's function table: {two-letter code: address}. */
export function romFunctions(rom) {
    const rd16 = (a) => rom[a] | (rom[a + 1] << 8);
    let p = rd16(0x14);
    const out = {};
    for (let i = 0; i < 256; i++, p += 4) {
        const code = rd16(p);
        if (!code) break;
        out[String.fromCharCode(code & 0xff, code >> 8)] = rd16(p + 2) & ~1;
    }
    return out;
}

export class Chip {
    /**
     * opts.bootrom: the RP2040 B1 boot ROM (16 KiB); opts.uf2 (a fresh board) or opts.flash
     * (the flash contents of the same board before its reset); opts.startUs: the TIMER's
     * count at power-on (MicroPython's ticks_ms() is it / 1000); opts.watchdog: REASON and
     * SCRATCH0..7 carried over a watchdog reset.
     */
    constructor(opts) {
        const clock = new Clock((opts.startUs || 0) * 1000);
        this.startNanos = clock.nanos;
        const mcu = new RP2040(clock);
        mcu.logger = new ConsoleLogger(LogLevel.Error);
        this.mcu = mcu;
        this.clock = clock;
        this.core = mcu.core;
        const rom = opts.bootrom;
        if (rom.length !== 16384) throw new Error(`boot ROM is ${rom.length} bytes, expected 16384`);
        mcu.loadBootrom(new Uint32Array(rom.buffer.slice(rom.byteOffset, rom.byteOffset + rom.length)));
        this.rom = romFunctions(rom);
        if (!(this.rom.RE && this.rom.RP)) throw new Error("boot ROM has no flash_range_erase/program");
        if (opts.flash) mcu.flash.set(opts.flash.subarray(0, FLASH_SIZE));
        else loadUf2(mcu.flash, opts.uf2);
        // fix 1: the ROM's flash erase/program, served here
        this._patchRom(this.rom.RE, BKPT_ERASE);
        this._patchRom(this.rom.RP, BKPT_PROGRAM);
        mcu.onBreak = (code) => this._onBreak(code);
        this.flashWrites = 0;
        // the chip's reset state the emulator lacks
        const wd = mcu.peripherals[WATCHDOG_BASE];
        const carried = opts.watchdog;
        mcu.peripherals[VREG_BASE] = new VregAndChipReset(mcu, carried ? 0 : CHIP_RESET_HAD_POR);
        if (carried) {
            wd.reason = carried.reason;
            wd.scratchData.set(carried.scratch);
        }
        for (const p of mcu.qspi) p.setInputValue(true);    // BOOTSEL released, flash CS idle high
        for (const p of mcu.gpio) readBack(p);
        // fix 4 and 5: the watchdog fires once; the owner resets the chip
        this.resetRequest = null;
        wd.onWatchdogTrigger = () => {
            wd.alarm.enable = false;
            wd.timer.enable = false;
            this.resetRequest = { reason: wd.reason, scratch: Uint32Array.from(wd.scratchData) };
        };
        // fix 3: the UART's TX interrupt only after a write
        for (const u of mcu.uart) this._fixUart(u);
        // USB CDC with fixes 2 and 6
        this.hostQueue = [];           // host -> device chunks (Uint8Array), in order
        this.hostQueued = 0;
        this.outArmed = 0;             // the size of the armed OUT transfer, 0: none
        this.connected = false;
        this.onSerial = null;
        this.onConnect = null;
        this._attachUsb();
        this.hung = false;             // the core stops (a firmware hang with interrupts masked)
        this.core.PC = FLASH_BASE;     // the second-stage loader, then MicroPython's vectors
    }

    get nanos() { return this.clock.nanos; }

    /** Microseconds of the chip's TIMER (what time.ticks_us() reads). */
    get micros() { return this.clock.nanos / 1000; }

    _patchRom(addr, opcode) {
        const word = addr >> 2;
        const rom = this.mcu.bootrom;
        if (addr & 2) rom[word] = (rom[word] & 0x0000ffff) | (opcode << 16);
        else rom[word] = (rom[word] & 0xffff0000) | opcode;
    }

    _onBreak(code) {
        const core = this.core;
        const r = core.registers;
        const flash = this.mcu.flash;
        if (code === (BKPT_ERASE & 0xff)) {            // flash_range_erase(addr, count, ...)
            const a = r[0] >>> 0;
            const n = r[1] >>> 0;
            if (a + n <= flash.length) flash.fill(0xff, a, a + n);
        } else if (code === (BKPT_PROGRAM & 0xff)) {   // flash_range_program(addr, data, count)
            const a = r[0] >>> 0;
            const src = r[1] >>> 0;
            const n = r[2] >>> 0;
            for (let i = 0; i < n && a + i < flash.length; i++) {
                flash[a + i] &= this.mcu.readUint8(src + i);   // NOR flash: program clears bits
            }
        } else {
            return;                                    // a breakpoint of the firmware's own
        }
        this.flashWrites += 1;
        core.PC = core.LR & ~1;                        // return to the caller
    }

    _fixUart(u) {
        u.checkInterrupts = function checkInterrupts() {
            this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
        };
        const write = u.writeUint32.bind(u);
        u.writeUint32 = (offset, value) => {
            write(offset, value);
            if (offset === 0) {                        // UARTDR: a byte went out
                u.interruptStatus |= UARTTXINTR;
                u.checkInterrupts();
            }
        };
    }

    _attachUsb() {
        const usb = this.mcu.usbCtrl;
        const cdc = new USBCDC(usb);
        this.cdc = cdc;
        cdc.onDeviceConnected = () => {
            this.connected = true;
            if (this.onConnect) this.onConnect();
        };
        cdc.onSerialData = (buf) => {
            if (this.onSerial) this.onSerial(buf);
        };
        const read = usb.onEndpointRead;
        usb.onEndpointRead = (endpoint, size) => {
            if (endpoint === cdc.outEndpoint && cdc.outEndpoint >= 0) {
                this.outArmed = size;
                this._deliver();
            } else {
                read(endpoint, size);
            }
        };
    }

    _deliver() {
        const size = this.outArmed;
        if (!size || !this.hostQueued) return;
        const out = new Uint8Array(Math.min(size, this.hostQueued));
        let n = 0;
        while (n < out.length) {
            const head = this.hostQueue[0];
            const take = Math.min(head.length, out.length - n);
            out.set(head.subarray(0, take), n);
            n += take;
            if (take === head.length) this.hostQueue.shift();
            else this.hostQueue[0] = head.subarray(take);
        }
        this.hostQueued -= n;
        this.outArmed = 0;
        this.mcu.usbCtrl.endpointReadDone(this.cdc.outEndpoint, out);
    }

    /** Bytes from the host to the board's USB serial (queued until the device takes them). */
    serialWrite(bytes) {
        if (!bytes.length) return;
        this.hostQueue.push(Uint8Array.from(bytes));
        this.hostQueued += bytes.length;
        this._deliver();
    }

    /**
     * Run until the clock reaches untilNanos, the wall clock passes wallDeadline
     * (performance.now() ms) or the chip asks for a reset (resetRequest). Returns the
     * instructions executed.
     */
    run(untilNanos, wallDeadline) {
        const core = this.core;
        const clock = this.clock;
        let n = 0;
        while (clock.nanos < untilNanos && this.resetRequest === null) {
            if (core.waiting || this.hung) {
                let d = untilNanos - clock.nanos;
                if (clock.nextAlarm) {
                    const a = clock.nanosToNextAlarm;
                    if (a < d) d = a > 0 ? a : 0;
                }
                clock.tick(d);
                if (!this.hung && core.waiting && d === 0) {
                    // an alarm due now and still waiting: let it fire next round
                    clock.tick(NS_PER_CYCLE);
                }
                continue;
            }
            for (let i = 0; i < 2000 && !core.waiting; i++) {
                clock.tick(core.executeInstruction() * NS_PER_CYCLE);
            }
            n += 2000;
            if (performance.now() > wallDeadline) break;
        }
        return n;
    }
}
