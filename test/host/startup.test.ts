// What keeps the daemon's start-up short and its idle memory small (issue #20): start-up's
// memory given back once the daemon is idle (the addon's releaseIdleMemory), and the daemon's
// code loaded from the one-file bundle `npm run build` makes, with its V8 code cache, unless
// that bundle is older than the tsc output.
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpDirMaker } from "../helpers/tmp-dirs.js";
import { describe, expect, it } from "vitest";
import { ROOT, startDaemon } from "../helpers/daemon.js";

const tmpDir = tmpDirMaker();

describe("start-up's memory released once the daemon is idle", () => {
  it("shrinks V8's young generation back to its initial size and frees the old space's garbage", () => {
    const script = `
      import { getHeapSpaceStatistics } from "node:v8";
      import { native } from ${JSON.stringify(join(ROOT, "dist/os/native.js"))};
      const space = (name) => getHeapSpaceStatistics().find((s) => s.space_name === name);
      // Allocation that survives scavenges, as module loading does, then becomes garbage.
      let keep = [];
      for (let i = 0; i < 600000; i++) keep.push({ i, s: "x" + i });
      const grown = space("new_space").space_size;
      const oldUsed = space("old_space").space_used_size;
      keep = null;
      native.releaseIdleMemory();
      console.log(JSON.stringify({ grown, released: space("new_space").space_size, oldUsed, oldAfter: space("old_space").space_used_size }));
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const { grown, released, oldUsed, oldAfter } = JSON.parse(r.stdout) as Record<string, number>;
    expect(grown).toBeGreaterThan(4 * 1024 * 1024);
    expect(released).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(oldAfter).toBeLessThan(oldUsed / 2);
  });
});

describe("the daemon bundle", () => {
  /** A copy of the package whose dist/ we may touch; node_modules and build/ are links. */
  function packageCopy(): string {
    const dir = tmpDir("bundle");
    cpSync(join(ROOT, "dist"), join(dir, "dist"), { recursive: true, preserveTimestamps: true });
    cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    symlinkSync(join(ROOT, "build"), join(dir, "build"));
    return dir;
  }

  /** Start `node dist/main.js` of `pkg` until ready and return the dist files Node loaded for it. */
  async function loadedFiles(pkg: string): Promise<string[]> {
    const log = join(pkg, "loads.txt");
    // A module loader hook that only records which files are loaded.
    const hook = join(pkg, "hook.mjs");
    writeFileSync(hook, `import { appendFileSync } from "node:fs";\nexport async function load(url, ctx, next) { if (url.startsWith("file:")) appendFileSync(${JSON.stringify(log)}, url + "\\n"); return next(url, ctx); }\n`);
    writeFileSync(join(pkg, "register.mjs"), `import { register } from "node:module";\nregister(${JSON.stringify(`file://${hook}`)});\n`);
    const d = await startDaemon({ main: join(pkg, "dist/main.js"), env: { NODE_OPTIONS: `--import ${join(pkg, "register.mjs")}` } });
    await d.stop();
    const prefix = `file://${join(pkg, "dist")}/`;
    return readFileSync(log, "utf8")
      .split("\n")
      .filter((u) => u.startsWith(prefix))
      .map((u) => u.slice(prefix.length));
  }

  it("runs the daemon from dist/bundle/daemon.cjs after npm run build", async () => {
    const files = await loadedFiles(packageCopy());
    // The bundle is compiled by daemon/bundle.js (a script, not an ES module the hook sees).
    expect(files).toContain("daemon/bundle.js");
    expect(files).not.toContain("daemon/daemon.js");
  });

  it("falls back to the compiled modules when the bundle is older than them (a bare tsc)", async () => {
    const pkg = packageCopy();
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(pkg, "dist/daemon/daemon.js"), later, later);
    const files = await loadedFiles(pkg);
    expect(files).not.toContain("daemon/bundle.js");
    expect(files).toContain("daemon/daemon.js");
  });

  it("is compiled with the code cache the build made beside it (V8 accepts it)", () => {
    const script = `
      import { readFileSync } from "node:fs";
      import { cacheFileOf, compileBundle } from ${JSON.stringify(join(ROOT, "dist/daemon/bundle.js"))};
      const bundle = ${JSON.stringify(join(ROOT, "dist/bundle/daemon.cjs"))};
      const cache = readFileSync(cacheFileOf(bundle));
      console.log(JSON.stringify({ size: cache.length, rejected: compileBundle(bundle, cache).cachedDataRejected }));
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const { size, rejected } = JSON.parse(r.stdout) as { size: number; rejected: boolean };
    expect(size).toBeGreaterThan(100_000);
    expect(rejected).toBe(false);
  });
});
