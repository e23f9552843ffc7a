// Instance benchmarks: launch, listing, stop+start, parallel launches, exec round trip and
// file push. Every instance is named `bn-<pid>-...`, tracked, and removed even on failure.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import type { BenchClient } from "./client.js";

const IMAGE_ALIAS = "busybox";
export const PUSH_MIB = 50;

export const median = (xs: number[]) => percentile(xs, 50);

/** Nearest-rank percentile; the median of an even count is the mean of the middle two. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (p === 50 && s.length % 2 === 0) return (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
}

/** Like Promise.all, but only settles once every promise has (so cleanup never races a create). */
async function allSettled(ps: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(ps)).find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Instances created on one daemon by this run, and their removal. */
export class InstanceBench {
  private readonly created = new Set<string>();
  private seq = 0;
  private devices: Record<string, Record<string, string>> | undefined;
  private readonly lxcConf = mkdtempSync("/tmp/nodelxd-bench-lxcconf-");
  /** Creates and state changes in flight: cleanup waits for them (an interrupted run must not race them). */
  private readonly inflight = new Set<Promise<unknown>>();

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const forget = () => this.inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  constructor(readonly client: BenchClient) {}

  /** Fail early, with a clear message, when the daemon lacks what the benchmarks use. */
  async check(): Promise<void> {
    const r = await this.client.request("GET", "/1.0/instances");
    if (r.status !== 200) throw new Error(`${this.client.socket}: GET /1.0/instances answered ${r.status}`);
    const alias = await this.client.request("GET", `/1.0/images/aliases/${IMAGE_ALIAS}`);
    if (alias.status !== 200) throw new Error(`${this.client.socket}: no image alias '${IMAGE_ALIAS}'`);
    // Same request body on both daemons, and no network: mask the default profile's NICs.
    const profile = await this.client.sync("GET", "/1.0/profiles/default");
    if (!Object.values(profile.devices ?? {}).some((d: any) => d.type === "disk" && d.path === "/")) throw new Error(`${this.client.socket}: the default profile has no root disk`);
    this.devices = {};
    for (const [name, dev] of Object.entries(profile.devices ?? {})) if ((dev as any).type === "nic") this.devices[name] = { type: "none" };
  }

  /** The default profile's NICs masked (same request body on both daemons, no network). */
  get maskedDevices(): Record<string, Record<string, string>> {
    if (!this.devices) throw new Error("check() first");
    return this.devices;
  }

  name(): string {
    const n = `bn-${process.pid}-${++this.seq}`;
    this.created.add(n);
    return n;
  }

  async create(name: string): Promise<void> {
    if (!this.devices) await this.check();
    await this.track(this.client.op("POST", "/1.0/instances", { name, source: { type: "image", alias: IMAGE_ALIAS }, profiles: ["default"], devices: this.devices }));
  }

  setState(name: string, action: "start" | "stop"): Promise<unknown> {
    return this.track(this.client.op("PUT", `/1.0/instances/${name}/state`, { action, timeout: 30, force: action === "stop" }));
  }

  async remove(name: string): Promise<void> {
    const st = await this.client.request("GET", `/1.0/instances/${name}/state`);
    if (st.status === 404) return void this.created.delete(name);
    if (st.body?.metadata?.status !== "Stopped") await this.setState(name, "stop");
    await this.client.op("DELETE", `/1.0/instances/${name}`);
    this.created.delete(name);
  }

  /** Remove everything this run created; report (not throw) what could not be removed. */
  async cleanup(): Promise<string[]> {
    const left: string[] = [];
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
    for (const n of [...this.created]) {
      try {
        await this.remove(n);
      } catch (e) {
        left.push(`${n}: ${(e as Error).message}`);
      }
    }
    rmSync(this.lxcConf, { recursive: true, force: true });
    return left;
  }

  /** One launch (create from the image alias, start), timed; the instance is removed after. */
  async launchOnce(): Promise<number> {
    const n = this.name();
    const t0 = process.hrtime.bigint();
    await this.create(n);
    await this.setState(n, "start");
    const took = ms(t0);
    await this.remove(n);
    return took;
  }

  /** GET /1.0/instances?recursion=2 with `count` stopped instances present. */
  async list(count: number, requests: number): Promise<{ samples: number[]; listed: number }> {
    const names = Array.from({ length: count }, () => this.name());
    try {
      for (let i = 0; i < names.length; i += 4) await allSettled(names.slice(i, i + 4).map((n) => this.create(n)));
      let listed = 0;
      for (let i = 0; i < 3; i++) listed = (await this.client.sync("GET", "/1.0/instances?recursion=2")).length;
      const samples: number[] = [];
      for (let i = 0; i < requests; i++) {
        const t0 = process.hrtime.bigint();
        await this.client.sync("GET", "/1.0/instances?recursion=2");
        samples.push(ms(t0));
      }
      return { samples, listed };
    } finally {
      for (const n of names) await this.remove(n);
    }
  }

  /** Run `body` against one running instance, removed after. */
  async withRunning<T>(body: (name: string) => Promise<T>): Promise<T> {
    const n = this.name();
    try {
      await this.create(n);
      await this.setState(n, "start");
      return await body(n);
    } finally {
      await this.remove(n);
    }
  }

  async stopStart(name: string, runs: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      await this.setState(name, "stop");
      await this.setState(name, "start");
      out.push(ms(t0));
    }
    return out;
  }

  /** Wall time until `count` concurrent launches are all running. */
  async parallel(count: number): Promise<number> {
    const names = Array.from({ length: count }, () => this.name());
    try {
      const t0 = process.hrtime.bigint();
      await allSettled(names.map(async (n) => {
        await this.create(n);
        await this.setState(n, "start");
      }));
      return ms(t0);
    } finally {
      for (const n of names) await this.remove(n);
    }
  }

  /** The stock client against this daemon; resolves with the wall time, rejects on failure. */
  lxc(...args: string[]): Promise<number> {
    const env = { ...process.env, LXD_DIR: this.client.lxdDir, LXD_CONF: this.lxcConf };
    return new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const p = spawn("lxc", args, { env, stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      p.stderr.on("data", (c: Buffer) => (err += c.toString()));
      p.on("error", reject);
      p.on("close", (code) => (code === 0 ? resolve(ms(t0)) : reject(new Error(`lxc ${args.join(" ")}: exit ${code}: ${err.trim()}`))));
    });
  }

  /** One `lxc exec NAME -- true`. */
  execLxcOnce(name: string): Promise<number> {
    return this.lxc("exec", name, "--", "true");
  }

  /** The stock client's fixed cost (start-up, config, one request): the floor under every `lxc` figure. */
  clientBaselineOnce(): Promise<number> {
    return this.lxc("query", "/1.0");
  }

  /** POST exec with wait-for-websocket, attach stdin/stdout/stderr/control, wait for the exit. */
  async execWebsocketOnce(name: string): Promise<number> {
    const t0 = process.hrtime.bigint();
    const { id, metadata } = await this.client.start("POST", `/1.0/instances/${name}/exec`, { command: ["true"], "wait-for-websocket": true, interactive: false, environment: {} });
    const fds: Record<string, string> = metadata.metadata.fds;
    const sockets = Object.values(fds).map((secret) => new WebSocket(`ws+unix://${this.client.socket}:/1.0/operations/${id}/websocket?secret=${secret}`));
    try {
      await allSettled(sockets.map((ws) => new Promise<void>((resolve, reject) => {
        ws.on("open", () => resolve());
        ws.on("error", reject);
      })));
      const op = await this.client.wait(id, "exec");
      if (op.metadata?.return !== 0) throw new Error(`exec true returned ${op.metadata?.return}`);
      return ms(t0);
    } finally {
      for (const ws of sockets) ws.terminate();
    }
  }

  /** MiB/s of `lxc file push` of `file` into the instance. */
  async pushLxc(name: string, file: string, runs: number): Promise<number[]> {
    const mib = statSync(file).size / 2 ** 20;
    const out: number[] = [];
    for (let i = 0; i < runs; i++) out.push(mib / ((await this.lxc("file", "push", file, `${name}/root/bench-push.bin`)) / 1000));
    return out;
  }

  /** MiB/s of a raw POST /1.0/instances/NAME/files streaming `file`. */
  async pushHttp(name: string, file: string, runs: number): Promise<number[]> {
    const mib = statSync(file).size / 2 ** 20;
    const headers = { "Content-Type": "application/octet-stream", "X-LXD-type": "file", "X-LXD-uid": "0", "X-LXD-gid": "0", "X-LXD-mode": "0644", "X-LXD-write": "overwrite" };
    const out: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      await this.client.sync("POST", `/1.0/instances/${name}/files?path=/root/bench-http.bin`, { file }, headers);
      out.push(mib / (ms(t0) / 1000));
    }
    return out;
  }
}

/** A file of `mib` MiB of random bytes (incompressible), written in 1 MiB chunks. */
export function randomFile(mib: number): string {
  const dir = mkdtempSync("/tmp/nodelxd-bench-data-");
  const path = join(dir, "random.bin");
  const fd = openSync(path, "w");
  try {
    for (let i = 0; i < mib; i++) writeSync(fd, randomBytes(2 ** 20));
  } finally {
    closeSync(fd);
  }
  return path;
}
