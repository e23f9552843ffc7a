// The BGP backend: one supervised GoBGP daemon (Debian's gobgpd, the library LXD embeds) per
// nodelxd. Its gRPC API listens on a unix socket in $LXD_DIR/bgp only (no TCP API, no pprof);
// the listener and the peers are its JSON config file (peer changes: rewrite + SIGHUP, which
// gobgpd applies as peer add/update/delete), the prefixes are added and withdrawn with the
// `gobgp` CLI, reconciled against what its global RIB holds. A gobgpd that dies is restarted
// (backing off) with everything pushed again.
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { run, spawnService, type ServiceProcess } from "../../os/exec.js";
import { parseIp } from "../ipnet.js";
import { bgpListenAddress } from "./rules.js";
import type { BgpBackend, BgpGlobal, BgpPath, BgpPeer } from "./speaker.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** gobgpd's configuration (its JSON config format) for a listener and its peers. */
export function gobgpdConfig(global: BgpGlobal, peers: BgpPeer[]): Record<string, unknown> {
  const { host, port } = bgpListenAddress(global.address);
  const listenFamily = parseIp(host)?.family;
  const specific = host !== "::" && host !== "0.0.0.0" ? host : undefined;
  return {
    global: { config: { as: global.asn, "router-id": global.routerId, port, "local-address-list": [host] } },
    neighbors: peers.map((p) => {
      const transport: Record<string, unknown> = {};
      // A listener bound to one address also opens its sessions from it (peers check the source).
      if (specific && parseIp(p.address)?.family === listenFamily) transport["local-address"] = specific;
      return {
        config: { "neighbor-address": p.address, "peer-as": p.asn, ...(p.password ? { "auth-password": p.password } : {}) },
        ...(Object.keys(transport).length ? { transport: { config: transport } } : {}),
        // As LXD: 120 s of graceful restart before the peer drops our routes, any multihop distance.
        "graceful-restart": { config: { enabled: true, "restart-time": 120 } },
        "ebgp-multihop": { config: { enabled: true, "multihop-ttl": 255 } },
        "afi-safis": ["ipv4-unicast", "ipv6-unicast"].map((name) => ({
          config: { "afi-safi-name": name },
          "mp-graceful-restart": { config: { enabled: true } },
        })),
      };
    }),
  };
}

/** The prefixes of `gobgp -j global rib -a FAMILY` with their next hop. */
export function ribPaths(json: string): Map<string, string> {
  const out = new Map<string, string>();
  const rib = JSON.parse(json || "{}") as Record<string, { attrs?: { type: number; nexthop?: string }[] }[]>;
  for (const [prefix, paths] of Object.entries(rib)) {
    for (const p of paths ?? []) {
      const nh = p.attrs?.find((a) => a.type === 3 || a.type === 14)?.nexthop;
      if (nh !== undefined) out.set(prefix, nh);
    }
  }
  return out;
}

/**
 * The error a gobgpd that exited at start reported (its last log line's Error/Err field, e.g.
 * "listen tcp4 10.0.0.1:179: bind: address already in use", as LXD's embedded GoBGP returns it).
 */
export function gobgpdError(output: string): string | undefined {
  const last = output.trim().split("\n").pop() ?? "";
  return /\bErr(?:or)?="((?:[^"\\]|\\.)*)"/.exec(last)?.[1] ?? (/\bmsg="((?:[^"\\]|\\.)*)"/.exec(last)?.[1] || undefined);
}

export class Gobgpd implements BgpBackend {
  private proc?: ServiceProcess;
  private global?: BgpGlobal;
  private peers: BgpPeer[] = [];
  private paths: BgpPath[] = [];
  private stopping = false;
  private crashes = 0;
  private restartTimer?: NodeJS.Timeout;

  constructor(
    /** $LXD_DIR/bgp */
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  private get conf(): string {
    return join(this.dir, "gobgpd.json");
  }
  private get sock(): string {
    return join(this.dir, "gobgpd.sock");
  }
  private get pidFile(): string {
    return join(this.dir, "gobgpd.pid");
  }

  private cli(args: string[]) {
    return run("gobgp", ["--target", `unix://${this.sock}`, ...args]);
  }

  private writeConfig(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // Peer passwords are in it: root only.
    writeFileSync(this.conf, JSON.stringify(gobgpdConfig(this.global!, this.peers)), { mode: 0o600 });
    chmodSync(this.conf, 0o600);
  }

  /** A gobgpd left by a daemon that died (it runs in its own process group) is ours to end. */
  private async killRecorded(): Promise<void> {
    let pid = 0;
    try {
      pid = Number(readFileSync(this.pidFile, "utf8").trim());
    } catch {
      return;
    }
    rmSync(this.pidFile, { force: true });
    if (!pid) return;
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      return;
    }
    if (!cmdline.includes("gobgpd") || !cmdline.includes(this.conf)) return;
    await this.terminate(pid, undefined);
  }

  private async terminate(pid: number, exited: Promise<unknown> | undefined): Promise<void> {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      return;
    }
    const gone = async () => {
      if (exited) return Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
      for (let i = 0; i < 150 && existsSync(`/proc/${pid}`); i++) await sleep(20);
      return !existsSync(`/proc/${pid}`);
    };
    if (!(await gone())) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
      await exited;
    }
  }

  private async launch(): Promise<void> {
    await this.killRecorded();
    rmSync(this.sock, { force: true });
    this.writeConfig();
    const proc = spawnService("gobgpd", ["-f", this.conf, "-t", "json", "--api-hosts", `unix://${this.sock}`, "--pprof-disable", "-p", "-l", "warn"]);
    this.proc = proc;
    writeFileSync(this.pidFile, `${proc.pid}\n`);
    let done: number | string | undefined;
    void proc.exited.then((code) => (done = code));
    for (let i = 0; ; i++) {
      await sleep(50);
      if (done !== undefined) {
        this.proc = undefined;
        rmSync(this.pidFile, { force: true });
        throw new Error(gobgpdError(proc.output()) ?? `Failed starting the BGP server (exit ${done})`);
      }
      if (existsSync(this.sock) && (await this.cli(["-j", "global"]).then(() => true, () => false))) break;
      if (i > 200) {
        await this.terminate(proc.pid, proc.exited);
        this.proc = undefined;
        throw new Error("Failed starting the BGP server: its API did not answer");
      }
    }
    void proc.exited.then((code) => {
      if (this.proc !== proc || this.stopping) return;
      this.proc = undefined;
      rmSync(this.pidFile, { force: true });
      this.log.warn({ code, output: proc.output() }, "gobgpd exited; restarting it");
      this.scheduleRestart();
    });
    setTimeout(() => this.proc === proc && (this.crashes = 0), 60_000).unref();
  }

  private scheduleRestart(): void {
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(this.crashes++, 5));
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.stopping || this.proc || !this.global) return;
      this.launch()
        .then(() => this.reconcile())
        .catch((err) => {
          this.log.error({ err }, "gobgpd restart failed");
          if (!this.stopping) this.scheduleRestart();
        });
    }, delay);
    this.restartTimer.unref();
  }

  async start(global: BgpGlobal, peers: BgpPeer[], paths: BgpPath[]): Promise<void> {
    await this.stop();
    this.stopping = false;
    this.global = global;
    this.peers = peers;
    this.paths = paths;
    this.crashes = 0;
    await this.launch();
    await this.reconcile();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const proc = this.proc;
    this.proc = undefined;
    if (proc) await this.terminate(proc.pid, proc.exited);
    else await this.killRecorded();
    rmSync(this.pidFile, { force: true });
    rmSync(this.sock, { force: true });
    this.global = undefined;
  }

  async setPeers(peers: BgpPeer[]): Promise<void> {
    this.peers = peers;
    if (!this.global || !this.proc) return;
    this.writeConfig();
    process.kill(this.proc.pid, "SIGHUP");
  }

  async setPaths(paths: BgpPath[]): Promise<void> {
    this.paths = paths;
    if (this.proc) await this.reconcile();
  }

  /** Make gobgpd's local RIB hold exactly our prefixes (the first next hop of a prefix wins). */
  private async reconcile(): Promise<void> {
    for (const family of [4, 6] as const) {
      const afi = family === 4 ? "ipv4" : "ipv6";
      const want = new Map<string, string>();
      for (const p of this.paths) if (parseIp(p.prefix.split("/")[0])?.family === family && !want.has(p.prefix)) want.set(p.prefix, p.nexthop);
      const have = ribPaths((await this.cli(["-j", "global", "rib", "-a", afi])).stdout);
      for (const [prefix, nexthop] of want) {
        if (have.get(prefix) === nexthop) continue;
        await this.cli(["global", "rib", "add", "-a", afi, prefix, "nexthop", nexthop, "origin", "igp"]);
      }
      for (const prefix of have.keys()) if (!want.has(prefix)) await this.cli(["global", "rib", "del", "-a", afi, prefix]);
    }
  }
}
