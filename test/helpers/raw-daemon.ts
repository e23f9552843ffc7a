// A daemon whose instances port serves runtime() for raw fixture containers (test-only,
// until the instances feature lands), plus helpers to drive the stock client with stdin.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import WebSocket from "ws";
import { ROOT, startDaemon, type TestDaemon } from "./daemon.js";
import type { RawContainer } from "./raw-container.js";

export function startRawDaemon(...containers: RawContainer[]): Promise<TestDaemon> {
  return startDaemon({
    main: join(ROOT, "test/helpers/raw-runtime-main.mjs"),
    env: { NODELXD_TEST_RAW_CONTAINERS: containers.map((c) => c.stateFile).join(":") },
  });
}

export function clientEnv(d: TestDaemon): NodeJS.ProcessEnv {
  return { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" };
}

/** The stock client with stdin. */
export function lxcIn(d: TestDaemon, input: string | Buffer | undefined, ...args: string[]) {
  const r = spawnSync("lxc", args, { env: clientEnv(d), input, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status ?? -1, stdout: r.stdout?.toString("utf8") ?? "", stderr: r.stderr?.toString("utf8") ?? "" };
}

/** The stock client under a pty (`script`), so it runs interactively. */
export function lxcTty(d: TestDaemon, command: string, input?: string) {
  const r = spawnSync("script", ["-qec", command, "/dev/null"], { env: clientEnv(d), input, encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

export function opSocket(d: TestDaemon, opId: string, secret: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${d.socket}:/1.0/operations/${opId}/websocket?secret=${secret}`);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}
