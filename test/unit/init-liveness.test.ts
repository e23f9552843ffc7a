import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { InitLiveness, procStartTime } from "../../src/instances/lxc/liveness.js";

const exited = (l: InitLiveness) => new Promise<void>((resolve) => l.onExit(resolve));

describe("init liveness (pidfd on the event loop)", () => {
  it("answers from memory while the process lives and reports its exit", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      const init = { pid: child.pid!, startTime: procStartTime(child.pid!)! };
      const liveness = new InitLiveness();
      expect(liveness.alive(init)).toBe(true);
      expect(liveness.perProcess(init, () => ({ made: 1 }))).toEqual({ made: 1 });
      expect(liveness.perProcess(init, () => ({ made: 2 }))).toEqual({ made: 1 });
      // Another start time is another process (a reused pid): not alive, and not this one's data.
      expect(liveness.alive({ pid: init.pid, startTime: "1" })).toBe(false);
      expect(liveness.alive(init)).toBe(true);
      const gone = exited(liveness);
      child.kill("SIGKILL");
      await gone;
      expect(liveness.alive(init)).toBe(false);
      expect(liveness.perProcess(init, () => 1)).toBeUndefined();
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("is false for no process and for no init", () => {
    const liveness = new InitLiveness();
    expect(liveness.alive(undefined)).toBe(false);
    expect(liveness.alive({ pid: 0, startTime: "" })).toBe(false);
    expect(liveness.alive({ pid: 2 ** 22 + 7, startTime: "5" })).toBe(false);
  });
});
