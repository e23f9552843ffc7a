// The daemon's one-file bundle (dist/bundle/daemon.cjs, made by scripts/bundle-daemon.mjs) and
// its V8 code cache (dist/bundle/daemon.cache): the bundle is compiled as Node compiles a
// CommonJS file, with the bytecode the build kept after evaluating it once, so the functions
// that evaluation ran are not parsed and compiled again (~90 ms of CPU at each start, issue #20).
// V8 accepts a cache only from the same V8 under the same flags; one it rejects (another Node,
// `node --some-v8-flag`) only means compiling as without a cache.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { Script } from "node:vm";

/** The function CommonJS wraps a file in (the build and the daemon must compile the same source). */
const wrapCommonJs = (code: string) => `(function (exports, require, module, __filename, __dirname) { ${code}\n});`;

/** Where the code cache of `bundle` is kept. */
export function cacheFileOf(bundle: string): string {
  return bundle.replace(/\.cjs$/, ".cache");
}

/** Compile the bundle (with `cachedData` when given: `script.cachedDataRejected` tells whether V8 took it). */
export function compileBundle(bundle: string, cachedData?: Buffer): Script {
  return new Script(wrapCommonJs(readFileSync(bundle, "utf8")), { filename: bundle, cachedData });
}

/** Evaluate a compiled bundle as a CommonJS module; its exports. */
export function evaluateBundle<T>(script: Script, bundle: string): T {
  const module = { exports: {} as T };
  script.runInThisContext().call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle));
  return module.exports;
}

/** The bundle's exports, compiled with its code cache when there is one. */
export function loadBundle<T>(bundle: string): T {
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cacheFileOf(bundle));
  } catch {
    // no cache (a build without one): compiled from source
  }
  return evaluateBundle<T>(compileBundle(bundle, cachedData), bundle);
}
