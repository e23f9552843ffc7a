// Host networking helpers for tests: unique names, subnets chosen from local facts,
// namespaces with a veth into a bridge, a private Open vSwitch, and leak checks.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

export function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeout?: number } = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", env: opts.env ?? process.env, input: opts.input, timeout: opts.timeout ?? 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

export function must(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): string {
  const r = sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A short random prefix for this test run (names stay within 15 characters). */
export const runId = () => randomBytes(2).toString("hex");

/** A 10.97.N.0/24 not used by any address or route on this host (local facts only). */
export function freeSubnet(taken: Set<number> = new Set()): number {
  const text = must("ip", ["-j", "addr"]) + must("ip", ["-j", "route", "show", "table", "all"]);
  for (let i = 0; i < 500; i++) {
    const n = 3 + Math.floor(Math.random() * 250);
    if (taken.has(n) || text.includes(`"10.97.${n}.`)) continue;
    taken.add(n);
    return n;
  }
  throw new Error("no free 10.97.N subnet");
}

export const linkExists = (name: string) => existsSync(`/sys/class/net/${name}`);

/** One of a network's chains in LXD's shared "inet lxd" table, e.g. nftChain("in", "lxdbr0"). */
export function nftChain(kind: string, network: string): { code: number | null; stdout: string } {
  return sh("nft", ["-nn", "list", "chain", "inet", "lxd", `${kind}.${network}`]);
}

/** The kinds of chain ("in", "acl", "fwdprert", ...) the network owns in "inet lxd". */
export function nftChainsOf(network: string): string[] {
  const r = sh("nft", ["-j", "list", "chains", "inet"]);
  if (r.code !== 0) return [];
  const doc = JSON.parse(r.stdout) as { nftables: { chain?: { table: string; name: string } }[] };
  return doc.nftables.flatMap((e) => (e.chain?.table === "lxd" && e.chain.name.endsWith(`.${network}`) ? [e.chain.name.slice(0, -network.length - 1)] : []));
}

/** PIDs of dnsmasq processes serving an interface. */
export function dnsmasqPids(iface: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
      if (cmd[0].endsWith("dnsmasq") && cmd.includes(`--interface=${iface}`)) {
        const stat = readFileSync(`/proc/${p}/stat`, "utf8");
        if (!/\) Z /.test(stat)) out.push(Number(p));
      }
    } catch {
      /* gone */
    }
  }
  return out;
}

export async function waitFor<T>(fn: () => T | undefined | false, timeoutMs = 15_000, stepMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** A network namespace with one veth; the host end is returned for attaching to a bridge. */
export function makeNetns(name: string, hostEnd: string, nsEnd = "eth0") {
  must("ip", ["netns", "add", name]);
  must("ip", ["link", "add", hostEnd, "type", "veth", "peer", "name", `${hostEnd}p`]);
  must("ip", ["link", "set", `${hostEnd}p`, "netns", name]);
  must("ip", ["-n", name, "link", "set", `${hostEnd}p`, "name", nsEnd]);
  must("ip", ["-n", name, "link", "set", nsEnd, "up"]);
  must("ip", ["-n", name, "link", "set", "lo", "up"]);
  must("ip", ["link", "set", hostEnd, "up"]);
  return {
    exec: (args: string[]) => sh("ip", ["netns", "exec", name, ...args], { timeout: 60_000 }),
    mac: () => must("ip", ["netns", "exec", name, "cat", `/sys/class/net/${nsEnd}/address`]).trim(),
    destroy: () => {
      sh("ip", ["link", "del", hostEnd]);
      sh("ip", ["netns", "del", name]);
    },
  };
}

/** Run busybox udhcpc in a namespace once; returns the leased address or undefined. */
export function udhcpc(ns: string, iface = "eth0"): string | undefined {
  const r = sh("ip", ["netns", "exec", ns, "busybox", "udhcpc", "-i", iface, "-n", "-q", "-f", "-t", "6", "-T", "2", "-s", "/bin/true"], { timeout: 40_000 });
  return /(?:lease of|obtained) (\d+\.\d+\.\d+\.\d+)/.exec(r.stdout + r.stderr)?.[1];
}

/** A private Open vSwitch (userspace datapath): its own db, run dir and pids. */
export function startOvs() {
  const dir = mkdtempSync("/tmp/nodelxd-test-ovs-");
  const env = { ...process.env, OVS_RUNDIR: dir, OVS_LOGDIR: dir, OVS_DBDIR: dir, OVS_SYSCONFDIR: dir };
  must("ovsdb-tool", ["create", join(dir, "conf.db"), "/usr/share/openvswitch/vswitch.ovsschema"], { env });
  must("ovsdb-server", [join(dir, "conf.db"), `--remote=punix:${join(dir, "db.sock")}`, `--pidfile=${join(dir, "ovsdb-server.pid")}`, "--detach", `--log-file=${join(dir, "ovsdb-server.log")}`], { env });
  must("ovs-vsctl", ["--no-wait", "init"], { env });
  must("ovs-vswitchd", [`--pidfile=${join(dir, "ovs-vswitchd.pid")}`, "--detach", `--log-file=${join(dir, "ovs-vswitchd.log")}`], { env });
  const pid = (f: string) => Number(readFileSync(join(dir, f), "utf8").trim());
  const pids = [pid("ovs-vswitchd.pid"), pid("ovsdb-server.pid")];
  return {
    dir,
    env,
    vsctl: (...args: string[]) => sh("ovs-vsctl", args, { env }),
    stop: async () => {
      for (const p of pids) {
        try {
          process.kill(p, "SIGTERM");
        } catch {
          /* gone */
        }
      }
      await waitFor(() => pids.every((p) => !existsSync(`/proc/${p}`)), 10_000).catch(() => pids.forEach((p) => sh("kill", ["-9", String(p)])));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
