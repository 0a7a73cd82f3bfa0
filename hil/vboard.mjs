#!/usr/bin/env node
// The virtual board on real MicroPython: the WebAssembly port under Node runs hil/vboard.py
// (the firmware's main loop on the one plant, plant/) with the firmware (firmware/ copied to
// /flash), on a virtual clock accelerated against Node's. A board on a pipe:
//
//   node hil/vboard.mjs [--firmware DIR] [--accel N] [--start-ticks N]
//
// stdin lines:  "U <hex>"  bytes arriving on the board's UART
//               "R <text>" one rig command (docs/rig.md)
//               "Q"        quit
// stdout lines: "READY"    once the firmware has booted
//               "U <hex>"  bytes the board wrote to its UART
//               "R <text>" the rig's reply to the oldest pending rig command
// MicroPython's own print output and any error go to stderr. hil/bridge.py turns the U and R
// channels into two pseudo-terminals that pyserial opens like hardware.

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { copyTree } from "../tools/mpyfs.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));

function opt(name, dflt) {
    const i = process.argv.indexOf(name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

function fail(msg) {
    process.stderr.write(`vboard: ${msg}\n`);
    process.exit(1);
}

const firmware = opt("--firmware", path.join(HERE, "..", "firmware"));
const accel = Number.parseInt(opt("--accel", "100"), 10);
const startTicks = Number.parseInt(opt("--start-ticks", "0"), 10);

let loadMicroPython;
try {
    ({ loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript"));
} catch (e) {
    fail(`cannot load the MicroPython WebAssembly port (${e.code || e.message}): run make setup`);
}
const mp = await loadMicroPython({
    heapsize: 1024 * 1024,
    linebuffer: false,
    stdout: (d) => process.stderr.write(d),
    stderr: (d) => process.stderr.write(d),
});
copyTree(mp.FS, firmware, "/flash");
copyTree(mp.FS, path.join(HERE, "..", "plant"), "/flash/plant");
mp.FS.writeFile("/flash/vboard.py", fs.readFileSync(path.join(HERE, "vboard.py")));

let vp;
try {
    mp.runPython("import sys\nsys.path.insert(0, '/flash')");
    vp = mp.pyimport("vboard");
    vp.start("/data", accel, startTicks);
} catch (e) {
    fail(`boot failed: ${e && e.message ? e.message : e}`);
}

const out = (s) => process.stdout.write(s + "\n");
let timer = null;

function tick() {
    timer = null;
    let delay;
    try {
        delay = Number(vp.service(Math.floor(performance.now())));
        const tx = vp.take();
        if (tx) out("U " + tx);
    } catch (e) {
        fail(`firmware raised: ${e && e.message ? e.message : e}`);
    }
    timer = setTimeout(tick, Math.max(0, Math.min(delay, 50)));
}

function now() {
    if (timer !== null) clearTimeout(timer);
    tick();
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
    try {
        if (line.startsWith("U ")) {
            vp.feed(line.slice(2).trim());
            now();
        } else if (line.startsWith("R ")) {
            out("R " + vp.rig(line.slice(2)));
            now();
        } else if (line.trim() === "Q") {
            process.exit(0);
        }
    } catch (e) {
        fail(`firmware raised: ${e && e.message ? e.message : e}`);
    }
});
rl.on("close", () => process.exit(0));

out("READY");
tick();
