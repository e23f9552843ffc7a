// Exec against a real instance (`lxc launch busybox`, unprivileged), through the daemon, with
// the stock client and raw websockets.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type WebSocket from "ws";
import { lxcIn, lxcTty, opSocket } from "../helpers/client.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
const c = { name: "" };

beforeAll(async () => {
  d = await startInitialisedDaemon();
  c.name = d.launch("exec");
});

afterAll(async () => {
  await d?.teardown();
});

const exec = (input: string | Buffer | undefined, ...args: string[]) => lxcIn(d, input, "exec", c.name, ...args);

/** Collects a socket's binary data until LXD's end-of-stream barrier (empty text message). */
function collect(ws: WebSocket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    const done = () => resolve(Buffer.concat(chunks));
    ws.on("message", (data, binary) => (binary ? chunks.push(data as Buffer) : done()));
    ws.on("close", done);
  });
}

async function waitOp(id: string) {
  const r = await d.api("GET", `/1.0/operations/${id}/wait?timeout=30`);
  return r.body.metadata;
}

describe("lxc exec (stock client)", () => {
  test("stdout and stderr stay separate, exit code propagates", () => {
    const r = exec(undefined, "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 3");
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("to-out\n");
    expect(r.stderr.trim().split("\n").pop()).toBe("to-err");
  });

  test("exit codes: true, false, signals, missing and non-executable commands", () => {
    expect(exec(undefined, "--", "true").code).toBe(0);
    expect(exec(undefined, "--", "false").code).toBe(1);
    expect(exec(undefined, "--", "sh", "-c", "kill -9 $$").code).toBe(137);
    const missing = exec(undefined, "--", "/hx/no/such/binary");
    expect(missing.code).toBe(127);
    expect(missing.stderr.trim()).toBe("Error: Command not found");
    const notExec = exec(undefined, "--", "/etc/passwd");
    expect(notExec.code).toBe(126);
    expect(notExec.stderr.trim()).toBe("Error: Command not executable");
    // A command that exits 127 by itself is not "not found".
    const own = exec(undefined, "--", "sh", "-c", "exit 127");
    expect(own.code).toBe(127);
    expect(own.stderr).not.toContain("Command not found");
  });

  test("stdin is piped through, including a large binary input and EOF", () => {
    expect(exec("line1\nline2\n", "--", "cat").stdout).toBe("line1\nline2\n");
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
    const r = exec(big, "--", "md5sum");
    const { createHash } = require("node:crypto") as typeof import("node:crypto");
    expect(r.stdout.split(" ")[0]).toBe(createHash("md5").update(big).digest("hex"));
    expect(exec("7\n", "--", "sh", "-c", "read x; exit $x").code).toBe(7);
  });

  test("environment: LXD's defaults, --env, container=lxc", () => {
    const r = exec(undefined, "--env", "FOO=bar", "--env", "SPACED=a b", "--", "sh", "-c", 'echo "$FOO|$SPACED"');
    expect(r.stdout).toBe("bar|a b\n");
    const env = exec(undefined, "--", "env").stdout.split("\n");
    for (const v of ["HOME=/root", "USER=root", "LANG=C.UTF-8", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=lxc"]) {
      expect(env).toContain(v);
    }
    expect(env.some((l) => l.startsWith("PWD=") || l.startsWith("SHLVL="))).toBe(false);
  });

  test("--cwd, default cwd $HOME, --user/--group", () => {
    expect(exec(undefined, "--cwd", "/tmp", "--", "pwd").stdout).toBe("/tmp\n");
    expect(exec(undefined, "--", "pwd").stdout).toBe("/root\n");
    expect(exec(undefined, "--cwd", "/no/such/dir", "--", "pwd").stdout).toBe("/\n");
    expect(exec(undefined, "--user", "1000", "--group", "1001", "--", "sh", "-c", "id -u; id -g; pwd").stdout).toBe("1000\n1001\n/\n");
  });

  test("-T runs without a terminal", () => {
    expect(exec(undefined, "-T", "--", "sh", "-c", "[ -t 0 ] && echo tty || echo notty").stdout).toBe("notty\n");
  });

  test("interactive under a pty: tty, TERM, exit status, typed input", () => {
    const r = lxcTty(d, `lxc exec ${c.name} -- sh -c 'tty; echo $TERM; exit 5'`);
    expect(r.code).toBe(5);
    expect(r.stdout).toMatch(/\/dev\/pts\/[0-9]+/);
    // One CR/LF translation, as LXD's own pty gives.
    expect(r.stdout).toContain("xterm\r\n");
    expect(r.stdout).not.toContain("\r\r\n");
    const typed = lxcTty(d, `lxc exec ${c.name} -t -- sh`, "echo typed-$((6*7))\nexit 9\n");
    expect(typed.stdout).toContain("typed-42");
    const err = lxcTty(d, `lxc exec ${c.name} -t -- sh -c 'echo hi-from-pty >&2'`);
    expect(err.code).toBe(0);
    expect(err.stdout).toContain("hi-from-pty");
  });

  test("stopped instance and unknown instance are refused", async () => {
    const r = await d.api("POST", "/1.0/instances/nope/exec", { command: ["true"] });
    expect(r.status).toBe(404);
    expect(r.body.error).toBe("Instance not found");
    const bad = await d.api("POST", `/1.0/instances/${c.name}/exec`, { command: "true" });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/^json: cannot unmarshal string into Go struct field InstanceExecPost.command of type /);
  });
});

describe("exec API (raw websockets)", () => {
  test("websocket operation shape: fds per mode, metadata, resources, /containers alias", async () => {
    const r = await d.api("POST", `/1.0/instances/${c.name}/exec`, { command: ["touch", "/root/ran-piped"], "wait-for-websocket": true, interactive: false });
    expect(r.status).toBe(202);
    const op = r.body.metadata;
    expect(op.class).toBe("websocket");
    expect(op.description).toBe("Executing command");
    expect(Object.keys(op.metadata.fds).sort()).toEqual(["0", "1", "2", "control"]);
    expect(op.metadata.environment).toEqual({ HOME: "/root", LANG: "C.UTF-8", PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", USER: "root" });
    expect(op.metadata.interactive).toBe(false);
    expect(op.resources).toEqual({ containers: [`/1.0/containers/${c.name}`], instances: [`/1.0/instances/${c.name}`] });
    const i = await d.api("POST", `/1.0/containers/${c.name}/exec`, { command: ["touch", "/root/ran-pty"], "wait-for-websocket": true, interactive: true });
    expect(Object.keys(i.body.metadata.metadata.fds).sort()).toEqual(["0", "control"]);
    // Nobody connects: both fail after LXD's 5-second connect timeout.
    for (const id of [op.id, i.body.metadata.id]) {
      const done = await waitOp(id);
      expect(done.status).toBe("Failure");
      expect(done.err).toBe("Timed out waiting for websockets to connect");
    }
    // The helper entered the container at once, but neither command ran, and nothing waits on.
    expect(exec(undefined, "--", "ls", "/root").stdout).not.toContain("ran-");
    expect(exec(undefined, "--", "ps").stdout).not.toContain("nodelxd-attach");
  });

  test("a daemon killed while the command waits for its websockets: it never runs, the container keeps running", async () => {
    const r = await d.api("POST", `/1.0/instances/${c.name}/exec`, { command: ["touch", "/root/ran-after-kill"], "wait-for-websocket": true, interactive: false });
    expect(r.status).toBe(202);
    // The helper is in the container, held at its gate.
    let held = false;
    for (let i = 0; i < 40 && !held; i++) {
      held = exec(undefined, "--", "ps").stdout.includes("nodelxd-attach");
      if (!held) await new Promise((res) => setTimeout(res, 50));
    }
    expect(held).toBe(true);
    await d.kill9();
    await d.restart();
    expect(d.lxc("list", c.name, "-c", "s", "--format", "csv").stdout.trim()).toBe("RUNNING");
    for (let i = 0; i < 40 && exec(undefined, "--", "ps").stdout.includes("nodelxd-attach"); i++) await new Promise((res) => setTimeout(res, 50));
    expect(exec(undefined, "--", "ps").stdout).not.toContain("nodelxd-attach");
    expect(exec(undefined, "--", "ls", "/root").stdout).not.toContain("ran-after-kill");
  });

  async function start(command: string[], extra: Record<string, unknown> = {}) {
    const r = await d.api("POST", `/1.0/instances/${c.name}/exec`, { command, "wait-for-websocket": true, interactive: false, ...extra });
    const op = r.body.metadata;
    const fds = op.metadata.fds as Record<string, string>;
    const control = await opSocket(d, op.id, fds.control);
    const sockets: Record<string, WebSocket> = { control };
    for (const fd of Object.keys(fds).filter((k) => k !== "control")) sockets[fd] = await opSocket(d, op.id, fds[fd]);
    return { op, sockets };
  }

  test("binary frames, end-of-stream barriers, stdin EOF by an empty text message", async () => {
    const { op, sockets } = await start(["sh", "-c", "cat; echo done >&2"]);
    const out = collect(sockets["1"]);
    const err = collect(sockets["2"]);
    sockets["0"].send(Buffer.from("hello "));
    sockets["0"].send(Buffer.from("world"));
    sockets["0"].send("");
    expect((await out).toString()).toBe("hello world");
    expect((await err).toString()).toBe("done\n");
    const done = await waitOp(op.id);
    expect(done.status).toBe("Success");
    expect(done.metadata.return).toBe(0);
  });

  test("signal control message reaches the command", async () => {
    const { op, sockets } = await start(["sh", "-c", "trap 'echo got-term; exit 42' TERM; while true; do sleep 0.1; done"]);
    const out = collect(sockets["1"]);
    await new Promise((r) => setTimeout(r, 500));
    sockets.control.send(JSON.stringify({ command: "signal", signal: 15 }));
    expect((await out).toString()).toBe("got-term\n");
    expect((await waitOp(op.id)).metadata.return).toBe(42);
  });

  test("dropping the control socket kills the command", async () => {
    const { op, sockets } = await start(["sleep", "600"]);
    await new Promise((r) => setTimeout(r, 300));
    sockets.control.close();
    const done = await waitOp(op.id);
    expect(done.status_code).toBeGreaterThanOrEqual(200);
    expect(done.metadata.return).toBe(137);
  });

  test("interactive: a pty, window-resize reaches stty size", async () => {
    const { op, sockets } = await start(["sh"], { interactive: true, width: 100, height: 30, environment: { TERM: "xterm" } });
    let text = "";
    sockets["0"].on("message", (data) => (text += data.toString()));
    const waitFor = async (s: string) => {
      for (let i = 0; i < 100 && !text.includes(s); i++) await new Promise((r) => setTimeout(r, 50));
      return text.includes(s);
    };
    sockets["0"].send(Buffer.from("stty size\n"));
    const ok30 = await waitFor("30 100");
    expect(ok30).toBe(true);
    sockets.control.send(JSON.stringify({ command: "window-resize", args: { width: "132", height: "43" } }));
    await new Promise((r) => setTimeout(r, 300));
    sockets["0"].send(Buffer.from("stty size; exit 4\n"));
    expect(await waitFor("43 132")).toBe(true);
    const done = await waitOp(op.id);
    expect(done.metadata.return).toBe(4);
  });

  test("record-output without websockets writes the instance's exec logs", async () => {
    const r = await d.api("POST", `/1.0/instances/${c.name}/exec`, {
      command: ["sh", "-c", "echo recorded-out; echo recorded-err >&2; exit 2"],
      "wait-for-websocket": false,
      "record-output": true,
    });
    expect(r.body.metadata.class).toBe("task");
    const done = await waitOp(r.body.metadata.id);
    expect(done.metadata.return).toBe(2);
    const id = r.body.metadata.id;
    expect(done.metadata.output).toEqual({
      "1": `/1.0/instances/${c.name}/logs/exec_${id}.stdout`,
      "2": `/1.0/instances/${c.name}/logs/exec_${id}.stderr`,
    });
    expect(readFileSync(join(d.dir, "logs", c.name, `exec_${id}.stdout`), "utf8")).toBe("recorded-out\n");
    expect(readFileSync(join(d.dir, "logs", c.name, `exec_${id}.stderr`), "utf8")).toBe("recorded-err\n");
    // The instance's logs API lists, serves and deletes them, as LXD does.
    const [out, err] = [done.metadata.output["1"], done.metadata.output["2"]];
    const logs = async () => (await d.api("GET", `/1.0/instances/${c.name}/logs`)).body.metadata as string[];
    expect(await logs()).toEqual(expect.arrayContaining([out, err, `/1.0/instances/${c.name}/logs/lxc.log`]));
    const got = await d.api("GET", out);
    expect(got.status).toBe(200);
    expect(got.headers["content-type"]).toBe("application/octet-stream");
    expect(got.text).toBe("recorded-out\n");
    expect((await d.api("DELETE", err)).status).toBe(200);
    expect(await logs()).not.toContain(err);
    expect((await d.api("DELETE", err)).status).toBe(404);
    expect((await d.api("GET", err)).status).toBe(500);
    const lxcLog = await d.api("DELETE", `/1.0/instances/${c.name}/logs/lxc.log`);
    expect([lxcLog.status, lxcLog.body.error]).toEqual([400, "lxc.log and lxc.conf may not be deleted"]);
    const bogus = await d.api("GET", `/1.0/instances/${c.name}/logs/bogus.txt`);
    expect([bogus.status, bogus.body.error]).toEqual([400, "log file name bogus.txt not valid"]);
    const escape = await d.api("GET", `/1.0/instances/${c.name}/logs/exec_..%2F..%2Fdatabase`);
    expect(escape.status).toBe(400);
  });

  test("1 GiB of output streams with bounded daemon memory", async () => {
    const { op, sockets } = await start(["sh", "-c", "head -c 1073741824 /dev/zero"]);
    let bytes = 0;
    let peak = 0;
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.proc.pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
    const before = rss();
    const sampler = setInterval(() => (peak = Math.max(peak, rss())), 100);
    // A slow-ish reader: pause the socket now and then so backpressure has to work.
    const s1 = sockets["1"];
    await new Promise<void>((resolve) => {
      s1.on("message", (data, binary) => {
        if (!binary) return resolve();
        bytes += (data as Buffer).length;
        if (bytes % (64 * 1024 * 1024) < (data as Buffer).length) {
          (s1 as any).pause();
          setTimeout(() => (s1 as any).resume(), 200);
        }
      });
      s1.on("close", () => resolve());
    });
    clearInterval(sampler);
    expect(bytes).toBe(1073741824);
    expect((await waitOp(op.id)).metadata.return).toBe(0);
    expect(peak - before).toBeLessThan(128 * 1024 * 1024);
  }, 180_000);
});
