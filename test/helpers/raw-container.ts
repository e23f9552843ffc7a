// A real running container without the instances feature: the busybox test image unpacked
// into a private lxcpath, started with lxc-start. Test-only scaffolding for exec/file/console
// tests until instances land; `state` is what the test launcher serves as the runtime.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, lchownSync, lstatSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { busyboxImage } from "./image.js";

export interface RawContainerState {
  name: string;
  lxcpath: string;
  rootfs: string;
  /** Host uid/gid of container id 0 (0 for a privileged container). */
  idBase: number;
  idSize: number;
}

export interface RawContainer extends RawContainerState {
  /** JSON file describing the container, read by the test launcher on every request. */
  stateFile: string;
  start(): void;
  stop(): void;
  pid(): number;
  destroy(): void;
}

export const ID_BASE = 1_000_000;
const ID_SIZE = 65536;

function shift(path: string, base: number): void {
  const st = lstatSync(path);
  lchownSync(path, st.uid + base, st.gid + base);
  if (st.isDirectory()) for (const e of readdirSync(path)) shift(join(path, e), base);
}

export function rawContainer(opts: { unprivileged?: boolean } = {}): RawContainer {
  const lxcpath = mkdtempSync("/tmp/nodelxd-test-rc-");
  chmodSync(lxcpath, 0o711);
  const name = `nlxdrc${process.pid}${Math.floor(Math.random() * 1e4)}`;
  const dir = join(lxcpath, name);
  execFileSync("mkdir", ["-p", "-m", "0711", dir]);
  execFileSync("tar", ["-C", dir, "-xJf", busyboxImage(), "rootfs"]);
  const rootfs = join(dir, "rootfs");
  // A shell on the console (for console tests) and no DHCP client (no network here).
  const inittab = readFileSync(join(rootfs, "etc/inittab"), "utf8")
    .split("\n")
    .filter((l) => !l.includes("udhcpc"))
    .join("\n");
  writeFileSync(join(rootfs, "etc/inittab"), inittab + "::respawn:-/bin/sh\n");
  writeFileSync(join(rootfs, "etc/hostname"), name + "\n");
  const idBase = opts.unprivileged === false ? 0 : ID_BASE;
  if (idBase) shift(rootfs, idBase);
  const config = [
    `lxc.uts.name = ${name}`,
    `lxc.rootfs.path = dir:${rootfs}`,
    "lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed",
    "lxc.autodev = 1",
    "lxc.pty.max = 1024",
    "lxc.tty.max = 0",
    "lxc.net.0.type = empty",
    "lxc.apparmor.profile = unconfined",
    `lxc.log.file = ${join(dir, "lxc.log")}`,
    "lxc.log.level = warn",
    ...(idBase ? [`lxc.idmap = u 0 ${idBase} ${ID_SIZE}`, `lxc.idmap = g 0 ${idBase} ${ID_SIZE}`] : []),
  ];
  writeFileSync(join(dir, "config"), config.join("\n") + "\n");
  const stateFile = join(lxcpath, "state.json");
  const state: RawContainerState = { name, lxcpath, rootfs, idBase, idSize: ID_SIZE };
  writeFileSync(stateFile, JSON.stringify(state));
  const lxc = (cmd: string, ...args: string[]) => spawnSync(cmd, ["-n", name, "-P", lxcpath, ...args], { encoding: "utf8", timeout: 60_000 });
  const c: RawContainer = {
    ...state,
    stateFile,
    start() {
      const r = lxc("lxc-start", "-d");
      if (r.status !== 0) throw new Error(`lxc-start failed: ${r.stderr}\n${existsSync(join(dir, "lxc.log")) ? readFileSync(join(dir, "lxc.log"), "utf8") : ""}`);
      lxc("lxc-wait", "-s", "RUNNING", "-t", "30");
    },
    stop() {
      lxc("lxc-stop", "-k");
      lxc("lxc-wait", "-s", "STOPPED", "-t", "30");
    },
    pid() {
      return Number(lxc("lxc-info", "-p", "-H").stdout.trim()) || 0;
    },
    destroy() {
      c.stop();
      rmSync(lxcpath, { recursive: true, force: true });
    },
  };
  return c;
}
