// The live migration's CRIU action script (src/instances/lxc/criu-action.ts), run as CRIU runs
// it: at "post-dump" it reports the dump and waits for the daemon's answer, which decides its
// exit status (0: CRIU stops the container; non-zero: CRIU resumes it); at any other step it
// exits 0 at once. The FIFOs and the script go when it is closed.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { actionScript } from "../../src/instances/lxc/criu-action.js";

function runScript(path: string, action: string): Promise<number | null> {
  const child = spawn(path, [], { env: { PATH: "/usr/bin:/bin", CRTOOLS_SCRIPT_ACTION: action }, stdio: "ignore" });
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

describe("CRIU action script", () => {
  for (const [answer, code] of [[true, 0], [false, 1]] as const) {
    it(`post-dump: reports the dump, waits, and exits ${code} when the answer is ${answer}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "nodelxd-action-test-"));
      const script = await actionScript(dir);
      expect(statSync(script.path).mode & 0o777).toBe(0o500);
      let exited = false;
      const run = runScript(script.path, "post-dump").then((c) => ((exited = true), c));
      await script.dumped;
      await new Promise((r) => setTimeout(r, 200));
      expect(exited).toBe(false);
      script.answer(answer);
      expect(await run).toBe(code);
      script.close();
      expect(existsSync(dir)).toBe(false);
    });
  }

  it("other steps pass through, and an answer given before the script reads it is kept", async () => {
    const script = await actionScript(mkdtempSync(join(tmpdir(), "nodelxd-action-test-")));
    expect(await runScript(script.path, "pre-dump")).toBe(0);
    script.answer(true);
    script.answer(false); // only the first answer counts
    expect(await runScript(script.path, "post-dump")).toBe(0);
    await script.dumped;
    script.close();
  });
});
