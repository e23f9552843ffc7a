// The nodelxd the bench starts itself (no --socket): a fresh LXD_DIR, initialised the way a
// user would with the stock client — a `dir` pool named default, the default profile's root
// disk, and the busybox test image as alias `busybox`. No NIC, so nothing touches the network.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const IMAGE_CACHE = "/tmp/nodelxd-test-cache";

export interface OwnDaemon {
  socket: string;
  stop(): Promise<void>;
}

/** GET /internal/ready on a daemon's unix socket: its status code. */
export function ready(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const agent = new Agent();
    const req = request({ socketPath, path: "/internal/ready", agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.on("close", () => agent.destroy());
    req.end();
  });
}

/** The busybox test image, built once per machine by test/fixtures/busybox-image.sh. */
export function busyboxImage(): string {
  const out = join(IMAGE_CACHE, "busybox.tar.xz");
  if (!existsSync(out)) {
    mkdirSync(IMAGE_CACHE, { recursive: true });
    const r = spawnSync(join(ROOT, "test/fixtures/busybox-image.sh"), [out], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`building the busybox image failed: ${r.stderr}`);
  }
  return out;
}

/** Unmount (lazily, deepest first) whatever the daemon left mounted under its directory. */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && m.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync("umount", ["-l", m]);
}

/** Start a nodelxd of this build in a fresh LXD_DIR; `initialise` also sets up pool, profile and image. */
export async function startOwnDaemon(initialise: boolean): Promise<OwnDaemon> {
  const dir = mkdtempSync("/tmp/nodelxd-bench-");
  const main = join(ROOT, "dist/main.js");
  const proc: ChildProcess = spawn(process.execPath, [main], { env: { ...process.env, LXD_DIR: dir }, stdio: "ignore" });
  const socket = join(dir, "unix.socket");
  const lxcConf = dir + ".lxdconf";
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await exited;
    }
    // Containers this run left behind (if their removal failed) must not outlive the directory.
    if (existsSync(join(dir, "containers"))) {
      for (const n of spawnSync("lxc-ls", ["-P", join(dir, "containers"), "-1"], { encoding: "utf8" }).stdout?.split("\n").filter(Boolean) ?? []) spawnSync("lxc-stop", ["-k", "-n", n, "-P", join(dir, "containers")]);
    }
    unmountUnder(dir);
    spawnSync("rm", ["-rf", "--one-file-system", dir, lxcConf]);
  };
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`nodelxd exited with ${proc.exitCode}`);
      if (Date.now() > deadline) throw new Error("nodelxd did not start");
      if (existsSync(socket) && (await ready(socket).catch(() => 0)) === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (initialise) {
      const image = busyboxImage();
      const lxc = (...args: string[]) => {
        const r = spawnSync("lxc", args, { env: { ...process.env, LXD_DIR: dir, LXD_CONF: lxcConf }, encoding: "utf8", timeout: 120_000 });
        if (r.status !== 0) throw new Error(`initialising nodelxd: lxc ${args.join(" ")}: ${r.stderr.trim()}`);
      };
      lxc("storage", "create", "default", "dir");
      lxc("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
      lxc("image", "import", image, "--alias", "busybox");
    }
    return { socket, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
