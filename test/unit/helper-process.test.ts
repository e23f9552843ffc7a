// HelperProcess: posix_spawn through the addon, stdio as socket pairs or given descriptors,
// exit codes and signals reported on the event loop, nothing of the daemon's inherited.
import { openSync, closeSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Socket } from "node:net";
import { expect, test } from "vitest";
import { HelperProcess, runHelper } from "../../src/os/helper-process.js";

const read = (s: Socket | null) =>
  new Promise<string>((resolve) => {
    let out = "";
    s!.on("data", (c: Buffer) => (out += c.toString()));
    s!.on("end", () => resolve(out));
  });

test("piped stdio, stdin end-of-file, the exit code", async () => {
  const p = new HelperProcess("/bin/sh", "sh", ["-c", "cat; echo err >&2; exit 3"], ["pipe", "pipe", "pipe"]);
  const out = read(p.stdout);
  const err = read(p.stderr);
  p.stdin!.end("hello");
  expect(await out).toBe("hello");
  expect(await err).toBe("err\n");
  expect(await p.exited).toEqual({ code: 3, signal: null });
});

test("argv0, cwd and exactly the given environment", async () => {
  const p = new HelperProcess("/bin/sh", "named", ["-c", 'echo "$0 $(pwd) $A"; env | wc -l'], ["ignore", "pipe", "ignore"], { cwd: "/tmp", env: { A: "b" } });
  const out = await read(p.stdout);
  // sh itself adds PWD (and may add SHLVL/_): far fewer than the test runner's environment.
  expect(out.split("\n")[0]).toBe("named /tmp b");
  expect(Number(out.split("\n")[1])).toBeLessThan(5);
  await p.exited;
});

test("a signal is reported by number; signals start default and unblocked; no descriptor leaks", async () => {
  const killed = new HelperProcess("/bin/sleep", "sleep", ["60"], ["ignore", "ignore", "ignore"]);
  killed.kill("SIGTERM");
  expect(await killed.exited).toEqual({ code: null, signal: 15 });
  killed.kill("SIGKILL"); // reaped: a no-op, never another process that got the pid

  const held = openSync("/dev/null", "r"); // the daemon's descriptors are close-on-exec
  const p = new HelperProcess("/bin/sh", "sh", ["-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/self/fd"], ["ignore", "pipe", "ignore"]);
  const out = await read(p.stdout);
  closeSync(held);
  expect(out).toMatch(/SigBlk:\s+0+\n/);
  expect(out).toMatch(/SigIgn:\s+0+\n/);
  // 0-2, and 3 for the directory ls itself is reading.
  expect(out.trim().split("\n").slice(2).map(Number).sort()).toEqual([0, 1, 2, 3]);
  await p.exited;
});

test("a descriptor given for two child slots; a missing program throws", async () => {
  const dir = mkdtempSync("/tmp/nodelxd-helper-");
  try {
    const fd = openSync(join(dir, "out"), "w");
    const p = new HelperProcess("/bin/sh", "sh", ["-c", "echo to-file; echo to-fd3 >&3"], ["ignore", fd, "ignore", fd]);
    await p.exited;
    closeSync(fd);
    expect(readFileSync(join(dir, "out"), "utf8")).toBe("to-file\nto-fd3\n");
    expect(() => new HelperProcess("/nonexistent", "x", [], ["ignore"])).toThrow(/ENOENT|No such file/);
    expect(() => new HelperProcess("/bin/true", "true", [], Array(17).fill("ignore"))).toThrow(/Invalid argument/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("runHelper collects both outputs and the status, 128 + N for a signal", async () => {
  expect(await runHelper("/bin/sh", "sh", ["-c", "echo out; echo err >&2; exit 4"])).toEqual({ stdout: "out\n", stderr: "err\n", exitCode: 4 });
  expect((await runHelper("/bin/sh", "sh", ["-c", "kill -9 $$"])).exitCode).toBe(137);
  expect((await runHelper("/bin/sh", "sh", ["-c", 'echo "$PATH"'], { PATH: "/x:/y" })).stdout).toBe("/x:/y\n");
});
