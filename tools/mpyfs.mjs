// Copying a host folder into the MicroPython WebAssembly port's filesystem: shared by the
// test runner (tools/mpy_run.mjs) and the MicroPython virtual board (hil/vboard.mjs).
import fs from "node:fs";
import path from "node:path";

// What a firmware tree holds that MicroPython may read: code and data files.
export const DATA_EXTENSIONS = new Set([".py", ".json", ".txt", ".toml", ".csv"]);

export function mkdirs(FS, dir) {
    let cur = "";
    for (const part of dir.split("/").filter(Boolean)) {
        cur += "/" + part;
        try {
            FS.mkdir(cur);
        } catch (e) {
            // EEXIST is fine; anything else shows up at writeFile.
        }
    }
}

// Copy hostDir's code and data files (not __pycache__ or dot folders) to target; returns
// how many files were copied.
export function copyTree(FS, hostDir, target) {
    mkdirs(FS, target);
    let count = 0;
    for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
        const hostPath = path.join(hostDir, entry.name);
        const targetPath = path.posix.join(target, entry.name);
        if (entry.isDirectory()) {
            if (entry.name === "__pycache__" || entry.name.startsWith(".")) continue;
            count += copyTree(FS, hostPath, targetPath);
        } else if (entry.isFile() && DATA_EXTENSIONS.has(path.extname(entry.name))) {
            FS.writeFile(targetPath, fs.readFileSync(hostPath));
            count += 1;
        }
    }
    return count;
}
