// `npm run bench:migrate`: server-to-server copy, nodelxd → nodelxd side by side with real LXD
// 5.0.2 → real LXD 5.0.2 (issue #12's figure). A stopped busybox container whose rootfs holds
// --size-mib of random data in 10 MiB files, with --snapshots snapshots, is copied with the stock
// client (`lxc copy a:c b:c`, pull mode, over HTTPS on loopback); then --change-mib of it is
// rewritten and `lxc copy --refresh` measured. Each pair of daemons is fresh, dir pools on both.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { busyboxImage, ready, startOwnDaemon, unmountUnder } from "./own-daemon.js";
import { median } from "./instance-figures.js";

interface Options {
  sizeMib: number;
  snapshots: number;
  changeMib: number;
  runs: number;
  json: boolean;
  reference: boolean;
  /** The first three octets of the loopback addresses the daemons listen on (.61 ours, .62 LXD's). */
  net: string;
}

const USAGE = "usage: npm run bench:migrate -- [--size-mib 500] [--snapshots 3] [--change-mib 10] [--runs 3] [--json] [--no-reference] [--net 127.0.0]";
const FILE_MIB = 10;

function parse(argv: string[]): Options {
  const o: Options = { sizeMib: 500, snapshots: 3, changeMib: 10, runs: 3, json: false, reference: true, net: "127.0.0" };
  const num = (v: string | undefined, flag: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag}: not a whole number: ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--size-mib") o.sizeMib = num(argv[++i], a);
    else if (a === "--snapshots") o.snapshots = num(argv[++i], a);
    else if (a === "--change-mib") o.changeMib = num(argv[++i], a);
    else if (a === "--runs") o.runs = Math.max(1, num(argv[++i], a));
    else if (a === "--json") o.json = true;
    else if (a === "--no-reference") o.reference = false;
    else if (a === "--net") {
      o.net = argv[++i] ?? "";
      if (!/^127\.\d{1,3}\.\d{1,3}$/.test(o.net)) throw new Error(`--net: not a loopback prefix like 127.0.0: ${o.net}`);
    }
    else throw new Error(`${a}: unknown option\n${USAGE}`);
  }
  return o;
}

interface Server {
  dir: string;
  stop(): Promise<void>;
}

/** Real LXD 5.0.2 (Debian's `lxd`) in a fresh LXD_DIR. */
async function startReference(): Promise<Server> {
  const dir = mkdtempSync("/tmp/nodelxd-bench-ref-");
  const proc: ChildProcess = spawn("lxd", ["--group", "root"], { env: { ...process.env, LXD_DIR: dir }, stdio: "ignore" });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await exited;
    }
    unmountUnder(dir);
    spawnSync("rm", ["-rf", "--one-file-system", dir]);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`lxd exited with ${proc.exitCode}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error("lxd did not start");
    }
    if (existsSync(join(dir, "unix.socket")) && (await ready(join(dir, "unix.socket")).catch(() => 0)) === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { dir, stop };
}

async function startOwn(): Promise<Server> {
  const d = await startOwnDaemon(false);
  return { dir: dirname(d.socket), stop: d.stop };
}

/** The stock client: asynchronous, so the daemons it drives in this process keep running. */
function lxc(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("lxc", args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve(Buffer.concat(out).toString()) : reject(new Error(`lxc ${args.join(" ")}: ${Buffer.concat(err).toString().trim()}`))));
  });
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** One pair of servers of a kind: copy and refresh timings (ms) over the runs. */
async function measurePair(kind: "nodelxd" | "lxd", o: Options, octet: number): Promise<{ copy: number[]; refresh: number[] }> {
  const start = kind === "nodelxd" ? startOwn : startReference;
  const servers: Server[] = [];
  const home = mkdtempSync("/tmp/nodelxd-bench-mig-home-");
  const client = { ...process.env, HOME: home };
  try {
    servers.push(await start(), await start());
    const [src] = servers;
    const port = 9000 + Math.floor(Math.random() * 900);
    for (const [i, s] of servers.entries()) {
      const local = { ...process.env, HOME: home, LXD_DIR: s.dir };
      await lxc(local, "storage", "create", "default", "dir");
      await lxc(local, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
      await lxc(local, "config", "set", "core.https_address", `${o.net}.${octet}:${port + i}`);
      await lxc(local, "config", "set", "core.trust_password", "bench");
      await lxc(client, "remote", "add", `s${i}`, `https://${o.net}.${octet}:${port + i}`, "--accept-certificate", "--password", "bench");
    }
    await lxc({ ...process.env, HOME: home, LXD_DIR: src.dir }, "image", "import", busyboxImage(), "--alias", "busybox");
    await lxc(client, "init", "s0:busybox", "s0:c");
    const data = join(src.dir, "storage-pools/default/containers/c/rootfs/bench");
    mkdirSync(data, { recursive: true });
    const files = Math.ceil(o.sizeMib / FILE_MIB);
    for (let f = 0; f < files; f++) writeFileSync(join(data, `f${f}`), randomBytes(FILE_MIB << 20));
    for (let s = 0; s < o.snapshots; s++) await lxc(client, "snapshot", "s0:c", `snap${s}`);
    const copy: number[] = [];
    const refresh: number[] = [];
    for (let r = 0; r < o.runs; r++) {
      copy.push(await timed(() => lxc(client, "copy", "s0:c", "s1:c")));
      for (let f = 0; f < Math.ceil(o.changeMib / FILE_MIB); f++) writeFileSync(join(data, `f${(r + f) % files}`), randomBytes(FILE_MIB << 20));
      refresh.push(await timed(() => lxc(client, "copy", "s0:c", "s1:c", "--refresh")));
      await lxc(client, "delete", "s1:c");
    }
    return { copy, refresh };
  } finally {
    for (const s of servers) {
      await lxc({ ...process.env, HOME: home, LXD_DIR: s.dir }, "delete", "-f", "c").catch(() => {});
      await s.stop();
    }
    rmSync(home, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const ours = await measurePair("nodelxd", o, 61);
  const ref = o.reference ? await measurePair("lxd", o, 62) : undefined;
  const figures = {
    copy_median_ms: median(ours.copy),
    refresh_median_ms: median(ours.refresh),
    ...(ref ? { reference_copy_median_ms: median(ref.copy), reference_refresh_median_ms: median(ref.refresh) } : {}),
  };
  if (o.json) return void console.log(JSON.stringify({ options: o, figures, samples: { nodelxd: ours, lxd: ref } }));
  const what = `${o.sizeMib} MiB rootfs, ${o.snapshots} snapshots`;
  const row = (label: string, a: number, b?: number) =>
    console.log(`${label.padEnd(48)} ${a.toFixed(0).padStart(8)} ms` + (b === undefined ? "" : ` ${b.toFixed(0).padStart(8)} ms ${(a / b).toFixed(2).padStart(6)}×`));
  console.log(`${"figure".padEnd(48)} ${"nodelxd".padStart(11)}${ref ? `${"LXD 5.0.2".padStart(12)} ${"ratio".padStart(7)}` : ""}`);
  row(`lxc copy (${what}), median of ${o.runs}`, figures.copy_median_ms, ref && median(ref.copy));
  row(`lxc copy --refresh after ${o.changeMib} MiB changed, median`, figures.refresh_median_ms, ref && median(ref.refresh));
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(1);
});
