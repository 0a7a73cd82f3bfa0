#!/usr/bin/env node
// The reference board on emulated silicon: the official MicroPython UF2 on an emulated
// RP2040 (hil/rp2chip.mjs, npm rp2040js), wired as boards/rp2_ref.py and docs/rig.md define
// its pins to the one plant (plant/physics.py, run by hil/pinrig.py in MicroPython's
// WebAssembly port in this same process), with the bench-rig protocol. A board on a pipe,
// like hil/vboard.mjs:
//
//   node hil/rp2board.mjs --uf2 FILE --bootrom FILE [--flash-image FILE] [--save-flash FILE]
//                         [--accel N] [--start-ticks MS]
//
// stdin lines:  "U <hex>"  bytes from the host to the board's USB serial (CDC)
//               "R <text>" one rig command (docs/rig.md)
//               "Q"        quit (after writing --save-flash)
// stdout lines: "READY"    once the board's USB serial is up
//               "U <hex>"  bytes the board sent on its USB serial
//               "R <text>" the rig's reply to the oldest pending rig command
//               "T <ms>"   board time, now and then (the harness paces board-time waits)
// Diagnostics go to stderr. hil/bridge.py turns U and R into pseudo-terminals: pyserial and
// mpremote open the USB serial like a Pico's /dev/ttyACM0.
//
// Time: the chip's clock is the board's; it runs at most --accel board ms per wall ms (0:
// as fast as the emulator goes) and jumps ahead while the firmware sleeps. A power cut
// discards the chip (the flash is kept); power on, a watchdog reset and machine.reset()
// start a fresh chip from the same flash.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { copyTree } from "../tools/mpyfs.mjs";
import { Chip, FLASH_SIZE } from "./rp2chip.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.join(HERE, "..");

// The reference board's pins (firmware/boards/rp2_ref.py, docs/rig.md)
const PIN_STEP = 2;
const PIN_DIR = 3;
const PIN_EN = 4;
const PIN_ROT = 5;
const PIN_AIR = 6;
const PIN_DOOR = 7;
const PIN_CLAMP = 8;
const ADC_PRESSURE = 0;            // GPIO26
const ADC_BATTERY = 1;             // GPIO27
const PULSE_HALF_NS = 100_000;     // rotation pulses: 100 µs high, 100 µs low
const HIGH = 1;                    // rp2040js GPIOPinState.High

function opt(name, dflt) {
    const i = process.argv.indexOf(name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

function fail(msg) {
    process.stderr.write(`rp2board: ${msg}\n`);
    process.exit(1);
}

function readFixture(p, what, env) {
    if (!p) fail(`no ${what}: give --${what} FILE (or ${env})`);
    try {
        return fs.readFileSync(p);
    } catch (e) {
        fail(`cannot read the ${what} ${p}: ${e.code || e.message}`);
    }
    return null;
}

const uf2Path = opt("--uf2", process.env.RP2_UF2);
const romPath = opt("--bootrom", process.env.RP2_BOOTROM);
const imagePath = opt("--flash-image", "");
const savePath = opt("--save-flash", "");
const accel = Number(opt("--accel", "20"));
const startTicks = Number.parseInt(opt("--start-ticks", "0"), 10);
const bootrom = readFixture(romPath, "bootrom", "RP2_BOOTROM");
let flash = null;
let uf2 = null;
if (imagePath) {
    flash = readFixture(imagePath, "flash-image", "");
    if (flash.length !== FLASH_SIZE) fail(`${imagePath}: ${flash.length} bytes, expected ${FLASH_SIZE}`);
} else {
    uf2 = readFixture(uf2Path, "uf2", "RP2_UF2");
}

// --- the plant and the rig: hil/pinrig.py in MicroPython (WebAssembly) ------------------------
let loadMicroPython;
try {
    ({ loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript"));
} catch (e) {
    fail(`cannot load the MicroPython WebAssembly port (${e.code || e.message}): run make setup`);
}
const mp = await loadMicroPython({
    heapsize: 512 * 1024,
    linebuffer: false,
    stdout: (d) => process.stderr.write(d),
    stderr: (d) => process.stderr.write(d),
});
copyTree(mp.FS, path.join(REPO, "firmware"), "/flash");
copyTree(mp.FS, path.join(REPO, "plant"), "/flash/plant");
mp.FS.writeFile("/flash/pinrig.py", fs.readFileSync(path.join(HERE, "pinrig.py")));
let rig;
try {
    mp.runPython("import sys\nsys.path.insert(0, '/flash')");
    rig = mp.pyimport("pinrig").start("rp2040js");
} catch (e) {
    fail(`the rig's plant failed to load: ${e && e.message ? e.message : e}`);
}

// --- board time ----------------------------------------------------------------------------------
// boardMs = the board's ms since start, across chips: base + the current chip's elapsed time.
let chip = null;
let baseMs = 0;               // board ms when the current chip started (or power went off)
let offSinceWall = 0;         // wall ms when power went off
const wall0 = performance.now();

function boardMs() {
    if (chip) return baseMs + (chip.nanos - chip.startNanos) / 1e6;
    return baseMs + (performance.now() - offSinceWall) * (accel > 0 ? accel : 1);
}

function tMs() {
    return Math.floor(boardMs());
}

// --- wiring ---------------------------------------------------------------------------------------
let enabled = false;
let pulsesOut = 0;            // rotation pulses driven onto the sensor pin
let pulseHigh = false;
let pulseAlarm = null;
let txBuf = [];
let ready = false;

const out = (s) => process.stdout.write(s + "\n");

function syncInputs() {
    if (!chip) return;
    const g = chip.mcu.gpio;
    g[PIN_DOOR].setInputValue(rig.door_level() === 1);
    g[PIN_AIR].setInputValue(rig.air_level() === 1);
    pulseOwed();
}

let lastPulseNs = -1;          // the last rotation pulse's rising edge (chip ns)
let stopLatencyNs = -1;        // from it to the motor enable's last fall (STOPLAT?)

function pulseOwed() {
    if (!chip || pulseHigh || (pulseAlarm && pulseAlarm.scheduled)) return;
    if (rig.pulses(tMs()) > pulsesOut) {
        lastPulseNs = chip.nanos;
        chip.mcu.gpio[PIN_ROT].setInputValue(true);
        pulseHigh = true;
        pulsesOut += 1;
        pulseAlarm.schedule(PULSE_HALF_NS);
    }
}

function onPulseAlarm() {
    if (!chip) return;
    if (pulseHigh) {
        chip.mcu.gpio[PIN_ROT].setInputValue(false);
        pulseHigh = false;
        pulseAlarm.schedule(PULSE_HALF_NS);       // the low half before the next pulse
    } else {
        pulseOwed();
    }
}

function wire(c) {
    const g = c.mcu.gpio;
    g[PIN_STEP].addListener((state, old) => {
        if (state === HIGH && old !== HIGH) {
            if (enabled) rig.step(tMs());
            else rig.count_step();
            pulseOwed();
        }
    });
    g[PIN_DIR].addListener((state) => rig.set_dir(state === HIGH));
    g[PIN_EN].addListener((state) => {
        const on = state === HIGH;
        if (enabled && !on && lastPulseNs >= 0) stopLatencyNs = c.nanos - lastPulseNs;
        enabled = on;
    });
    g[PIN_CLAMP].addListener((state) => rig.set_clamp(tMs(), state === HIGH));
    g[PIN_ROT].setInputValue(false);
    pulseHigh = false;
    pulseAlarm = c.clock.createAlarm(onPulseAlarm);
    const adc = c.mcu.adc;
    const read = adc.onADCRead;
    adc.onADCRead = (ch) => {
        adc.channelValues[ch] = rig.adc(ch === ADC_PRESSURE ? 0 : ch === ADC_BATTERY ? 1 : 9, tMs());
        read(ch);
    };
    c.onSerial = (buf) => txBuf.push(Buffer.from(buf));
    c.onConnect = () => {
        if (!ready) {
            ready = true;
            out("READY");
        }
    };
}

function powerOn(opts) {
    lastPulseNs = -1;
    const startUs = chip === null && baseMs === 0 ? startTicks * 1000 : 0;
    const c = new Chip({ bootrom, uf2, flash, startUs, ...opts });
    flash = c.mcu.flash;                  // the board's flash from now on: kept across resets
    uf2 = null;
    enabled = false;
    wire(c);
    chip = c;
    syncInputs();
}

function powerOff() {
    if (!chip) return;
    baseMs = boardMs();
    offSinceWall = performance.now();
    flash = Uint8Array.from(chip.mcu.flash.subarray(0, FLASH_SIZE));
    chip = null;
    enabled = false;
    pulseHigh = false;
    txBuf = [];
}

function resetChip(request) {
    // a watchdog reset or machine.reset(): a fresh chip, the same flash, the watchdog's
    // registers; board time goes on
    const t = tMs();
    baseMs = boardMs();
    flash = Uint8Array.from(chip.mcu.flash.subarray(0, FLASH_SIZE));
    chip = null;
    process.stderr.write(`rp2board: chip reset at ${t} ms (watchdog reason ${request.reason})\n`);
    rig.chip_reset();
    rig.set_clamp(t, false);
    powerOn({ watchdog: request });
}

// --- the loop ---------------------------------------------------------------------------------------
let timer = null;
let lastT = -1;

function flushTx() {
    if (txBuf.length) {
        out("U " + Buffer.concat(txBuf).toString("hex"));
        txBuf = [];
    }
}

function loop() {
    timer = null;
    const now = performance.now();
    if (chip) {
        // paced: up to the wall clock x accel, 20 ms of wall time a turn; flat out (accel
        // 0): turns of at most 5 ms of wall time (a second of board time while the chip
        // sleeps), so host bytes and rig lines are served between turns
        const targetMs = accel > 0 ? (now - wall0) * accel : boardMs() + 1000;
        const deadline = now + (accel > 0 ? 20 : 5);
        while (chip && boardMs() < targetMs && performance.now() < deadline) {
            chip.run(chip.startNanos + (targetMs - baseMs) * 1e6, deadline);
            if (chip.resetRequest) resetChip(chip.resetRequest);
        }
    }
    flushTx();
    const t = tMs();
    if (ready && t - lastT >= 100) {
        out("T " + t);
        lastT = t;
    }
    const behind = chip && accel > 0 && boardMs() < (performance.now() - wall0) * accel - 1;
    if (accel <= 0 || behind) timer = setImmediate(loop);
    else timer = setTimeout(loop, 2);
}

function kick() {
    if (timer !== null) {
        clearTimeout(timer);
        clearImmediate(timer);
    }
    loop();
}

function applyRig() {
    const want = rig.powered;
    if (want && !chip) powerOn({});
    else if (!want && chip) powerOff();
    if (chip) {
        chip.hung = rig.hung;
        syncInputs();
    }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
    if (line.startsWith("U ")) {
        if (chip && chip.connected) chip.serialWrite(Buffer.from(line.slice(2).trim(), "hex"));
        kick();
    } else if (line.startsWith("R ")) {
        let reply;
        try {
            if (line.slice(2).trim().toUpperCase() === "STOPLAT?") {
                reply = stopLatencyNs < 0 ? "ERR no stop seen yet"
                    : `OK ${Math.round(stopLatencyNs / 1000)}`;
                out("R " + reply);
                return;
            }
            reply = rig.rig(tMs(), line.slice(2));
            applyRig();
        } catch (e) {
            reply = `ERR ${e && e.message ? e.message : e}`;
        }
        out("R " + reply);
        kick();
    } else if (line.trim() === "Q") {
        quit();
    }
});
rl.on("close", quit);

function quit() {
    if (savePath) {
        const f = chip ? chip.mcu.flash.subarray(0, FLASH_SIZE) : flash.subarray(0, FLASH_SIZE);
        fs.writeFileSync(savePath, f);
    }
    process.exit(0);
}

powerOn({});
loop();
