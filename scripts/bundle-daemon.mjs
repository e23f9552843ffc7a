// Bundles the compiled daemon (dist/daemon/daemon.js and everything it imports, npm packages
// included) into one file, dist/bundle/daemon.cjs, which `node dist/main.js` loads when it is
// at least as new as the tsc output. Node's ES module loader resolves, reads and compiles
// ~350 files one by one at start; one file takes ~0.6 s of CPU off start-up (issue #20).
// The bundle sits two levels below the package root, as every dist/<dir>/<file>.js does, so
// paths relative to import.meta.url (build/Release/, createRequire) resolve the same.
// Left out and loaded from node_modules as before: native addons and what loads at first use.
//
// It is a CommonJS script rather than an ES module so that it can be compiled with a V8 code
// cache (node:vm's cachedData; Node 20 has none for ES modules): dist/bundle/daemon.cache, made
// here by compiling and evaluating the bundle once, holds the bytecode of everything its
// evaluation ran, and takes ~90 ms of CPU off loading it (src/daemon/bundle.ts; a cache V8
// rejects, made by another Node or under other V8 flags, only means compiling as without one).
import { build } from "esbuild";
import { rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { cacheFileOf, compileBundle, evaluateBundle } from "../dist/daemon/bundle.js";

const external = ["better-sqlite3", "node-pty", "ws", "etcd3", "protobufjs", "@peculiar/x509", "reflect-metadata", "dns-packet", "yaml"];
const outfile = resolve("dist/bundle/daemon.cjs");

await build({
  entryPoints: ["dist/daemon/daemon.js"],
  outfile,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  external,
  // Smaller source is less to decode and parse; identifiers stay as written, and functions and
  // classes keep their `.name` (esbuild renames clashing top-level names when it joins modules).
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  // Strict, as the ES modules it is made of; import.meta.url is the bundle's own URL; import()
  // of the packages loaded at first use becomes require() (a vm.Script has no module loader).
  banner: { js: '"use strict";\nconst __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: { "import.meta.url": "__bundleUrl" },
  supported: { "dynamic-import": false },
  logLevel: "warning",
});
rmSync("dist/bundle/daemon.js", { force: true }); // the ES module bundle of earlier builds

// The code cache: compile and evaluate (defining, not starting, the daemon), then keep the
// bytecode, compiled exactly as the daemon will (dist/daemon/bundle.js, from src/daemon/bundle.ts).
const script = compileBundle(outfile);
evaluateBundle(script, outfile);
writeFileSync(cacheFileOf(outfile), script.createCachedData());
