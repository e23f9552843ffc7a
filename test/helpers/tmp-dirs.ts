import { mkdtempSync, rmSync } from "node:fs";
import { afterAll } from "vitest";

/** A maker of /tmp/nodelxd-test-WHAT-* directories, all removed once the test file's run ends. */
export function tmpDirMaker(): (what: string) => string {
  const made: string[] = [];
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });
  return (what) => {
    const d = mkdtempSync(`/tmp/nodelxd-test-${what}-`);
    made.push(d);
    return d;
  };
}
