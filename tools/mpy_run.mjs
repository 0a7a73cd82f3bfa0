#!/usr/bin/env node
// Run a script under real MicroPython (the WebAssembly port) from the command line.
//
//   node tools/mpy_run.mjs [--heap KB] [--mount HOSTDIR:/TARGET ...] [--path /TARGET ...]
//                          (SCRIPT.py | -c CODE) [args...]
//
// --mount copies a host directory tree (only .py/.json/.txt/.toml/.csv files, no __pycache__)
//         into the in-memory filesystem at /TARGET.
// --path  puts /TARGET on sys.path (in the order given, ahead of the defaults).
// --heap  initial MicroPython heap in KiB (default 512; the heap still grows past it).
//
// sys.argv is [SCRIPT, args...] (or ["-c", args...]); sys.path[0] is the script's folder,
// as in CPython. stdout/stderr are streamed. Exit status: 0 on success, 1 when Python raises
// (the traceback goes to stderr), n for SystemExit(n).
// Unlike the package's own CLI, which exits 0 even when the script fails.

import fs from "node:fs";
import path from "node:path";

import { copyTree, mkdirs } from "./mpyfs.mjs";

const USAGE =
    "usage: node tools/mpy_run.mjs [--heap KB] [--mount HOSTDIR:/TARGET ...] [--path /TARGET ...] " +
    "(SCRIPT.py | -c CODE) [args...]";

function die(message, code = 2) {
    process.stderr.write(`mpy_run: ${message}\n`);
    process.exit(code);
}

function parseArgs(argv) {
    const opts = { heapKb: 512, mounts: [], paths: [], script: null, code: null, args: [] };
    let i = 0;
    const value = (flag) => {
        if (i + 1 >= argv.length) die(`${flag} needs a value\n${USAGE}`);
        i += 1;
        return argv[i];
    };
    for (; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--heap") {
            opts.heapKb = Number.parseInt(value(a), 10);
            if (!(opts.heapKb > 0)) die(`--heap wants a positive number of KiB\n${USAGE}`);
        } else if (a === "--mount") {
            const spec = value(a);
            const at = spec.lastIndexOf(":/");
            if (at < 0) die(`--mount wants HOSTDIR:/TARGET, got ${JSON.stringify(spec)}`);
            opts.mounts.push({ host: spec.slice(0, at), target: spec.slice(at + 1) });
        } else if (a === "--path") {
            opts.paths.push(value(a));
        } else if (a === "-c") {
            opts.code = value(a);
            opts.args = argv.slice(i + 1);
            return opts;
        } else if (a === "-h" || a === "--help") {
            process.stdout.write(USAGE + "\n");
            process.exit(0);
        } else if (a.startsWith("-") && a !== "-") {
            die(`unknown option ${a}\n${USAGE}`);
        } else {
            opts.script = a;
            opts.args = argv.slice(i + 1);
            return opts;
        }
    }
    die(`no script given\n${USAGE}`);
}

function mountTree(FS, hostDir, target) {
    let st;
    try {
        st = fs.statSync(hostDir);
    } catch {
        die(`--mount: no such directory ${hostDir}`);
    }
    if (!st.isDirectory()) die(`--mount: not a directory: ${hostDir}`);
    return copyTree(FS, hostDir, target);
}

// Runs the user's code with __name__ == "__main__" and turns SystemExit into a status code,
// so only real errors reach JS as PythonError.
const BOOTSTRAP = `
import sys
sys.argv.clear()  # sys attributes cannot be rebound in this port; mutate in place
sys.argv.extend(_mpy_run_cfg["argv"])
for _p in reversed(_mpy_run_cfg["path"]):
    sys.path.insert(0, _p)
_mpy_run_rc = 0
def _mpy_run_main():
    global _mpy_run_rc
    f = _mpy_run_cfg["file"]
    src = _mpy_run_cfg["src"]
    if src is None:
        with open(f) as fh:
            src = fh.read()
    g = {"__name__": "__main__", "__file__": f}
    try:
        exec(compile(src, f, "exec"), g)
    except SystemExit as e:
        c = e.args[0] if e.args else None
        if c is None:
            _mpy_run_rc = 0
        elif isinstance(c, int):
            _mpy_run_rc = c
        else:
            print(c, file=sys.stderr)
            _mpy_run_rc = 1
_mpy_run_main()
`;

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    let loadMicroPython;
    try {
        ({ loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript"));
    } catch (e) {
        die(
            "cannot load @micropython/micropython-webassembly-pyscript " +
                `(${e.code || e.message}); run \`make setup\` (npm ci) first`,
            3,
        );
    }
    const mp = await loadMicroPython({
        heapsize: opts.heapKb * 1024,
        linebuffer: false,
        stdout: (data) => process.stdout.write(data),
        stderr: (data) => process.stderr.write(data),
    });

    for (const m of opts.mounts) mountTree(mp.FS, m.host, m.target);

    let file;
    let src = null;
    const pyPath = [];
    if (opts.code !== null) {
        file = "<string>";
        src = opts.code;
        pyPath.push("");
    } else {
        let text;
        try {
            text = fs.readFileSync(opts.script);
        } catch {
            die(`cannot read script ${opts.script}`);
        }
        const dir = "/__main__";
        mkdirs(mp.FS, dir);
        file = path.posix.join(dir, path.basename(opts.script));
        mp.FS.writeFile(file, text);
        pyPath.push(dir);
    }
    pyPath.push(...opts.paths);

    // Handing the config over as a JSON string keeps quoting trivial.
    const cfg = {
        argv: [opts.code !== null ? "-c" : opts.script, ...opts.args],
        path: pyPath,
        file,
        src,
    };
    let rc = 0;
    try {
        mp.runPython(`import json\n_mpy_run_cfg = json.loads(${JSON.stringify(JSON.stringify(cfg))})`);
        mp.runPython(BOOTSTRAP);
        rc = Number(mp.globals.get("_mpy_run_rc")) || 0;
    } catch (e) {
        if (e && e.name === "PythonError") {
            // Drop the bootstrap's own frames (<stdin>) from the traceback.
            const lines = String(e.message).split("\n");
            const kept = [];
            for (let j = 0; j < lines.length; j++) {
                if (/^ {2}File "<stdin>"/.test(lines[j])) continue;
                kept.push(lines[j]);
            }
            process.stderr.write(kept.join("\n"));
            if (!kept.join("\n").endsWith("\n")) process.stderr.write("\n");
            rc = 1;
        } else {
            process.stderr.write(`mpy_run: internal error: ${e && e.stack ? e.stack : e}\n`);
            rc = 3;
        }
    }
    process.exitCode = rc;
}

await main();
