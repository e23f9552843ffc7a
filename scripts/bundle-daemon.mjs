// Bundles the compiled daemon (dist/daemon/daemon.js and everything it imports, npm packages
// included) into one ES module, dist/bundle/daemon.js, which `node dist/main.js` loads when it
// is at least as new as the tsc output. Node's ES module loader resolves, reads and compiles
// ~350 files one by one at start; one file takes ~0.6 s of CPU off start-up (issue #20).
// The bundle sits two levels below the package root, as every dist/<dir>/<file>.js does, so
// paths relative to import.meta.url (build/Release/, createRequire) resolve the same.
// Left out and loaded from node_modules as before: native addons and what loads at first use.
import { build } from "esbuild";

const external = ["better-sqlite3", "node-pty", "ws", "etcd3", "protobufjs", "@peculiar/x509", "reflect-metadata", "dns-packet", "yaml"];

await build({
  entryPoints: ["dist/daemon/daemon.js"],
  outfile: "dist/bundle/daemon.js",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external,
  // Smaller source is less to decode and parse; identifiers stay as written, and functions and
  // classes keep their `.name` (esbuild renames clashing top-level names when it joins modules).
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  // CommonJS packages in the bundle call require(): give the module one.
  banner: { js: 'import { createRequire as bundleRequire } from "node:module";\nconst require = bundleRequire(import.meta.url);' },
  logLevel: "warning",
});
