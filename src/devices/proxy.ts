// proxy devices (LXD 5.0.2): a relay process (native/proxy.c, LXD's forkproxy) whose listening
// sockets live in one side's namespaces (bind=host: the host's; bind=instance: the container's)
// and which connects in the other's; or, with nat=true, nftables DNAT chains in `inet lxd`
// towards the instance's static bridge address. The relay is started when the instance starts
// or the device is hot-plugged, recorded in devices/<instance>/proxy.<device> (pid and start
// time) so a restarted daemon adopts it, restarted by a supervisor if it dies while the
// instance runs, and ends with the instance (it watches the instance's init).
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseBool } from "../config/validators.js";
import { procStartTime } from "../instances/lxc/driver.js";
import { run } from "../os/exec.js";
import { HelperProcess } from "../os/helper-process.js";
import { helperPath } from "../os/native.js";
import { ipVersion, natLabel, natRemoveScript, natScript, parseProxyAddr, validateProxyConfig, type ProxyAddress } from "./proxy-addr.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";

interface Relay {
  pid: number;
  start: string;
}

const alive = (r: Relay | undefined): r is Relay => !!r && r.pid > 0 && procStartTime(r.pid) === r.start;

/** Relays the supervisor restarts when they die while their instance still runs. */
const supervised = new Map<string, { relay: Relay; instance: Relay; restart: () => Promise<void>; lastRestart: number }>();
let supervisorTimer: NodeJS.Timeout | undefined;

function supervise(key: string, entry: { relay: Relay; instance: Relay; restart: () => Promise<void> }): void {
  supervised.set(key, { ...entry, lastRestart: supervised.get(key)?.lastRestart ?? 0 });
  if (supervisorTimer) return;
  supervisorTimer = setInterval(() => {
    for (const [k, e] of supervised) {
      if (alive(e.relay)) continue;
      if (!alive(e.instance)) {
        supervised.delete(k);
        continue;
      }
      if (Date.now() - e.lastRestart < 5000) continue; // a relay that keeps dying is retried every 5 s
      e.lastRestart = Date.now();
      void e.restart().catch(() => {});
    }
    if (supervised.size === 0 && supervisorTimer) {
      clearInterval(supervisorTimer);
      supervisorTimer = undefined;
    }
  }, 2000);
  supervisorTimer.unref();
}

export class ProxyDevice implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
  ) {}

  private get nat(): boolean {
    return parseBool(this.config.nat);
  }

  private get relayFile(): string {
    return join(this.ctx.devicesDir, `proxy.${this.name}`);
  }

  private get logFile(): string {
    return join(this.ctx.logDir, `proxy.${this.name}.log`);
  }

  private get key(): string {
    return `${this.ctx.project}/${this.ctx.instance}/${this.name}`;
  }

  validate(): void {
    const p = this.ctx.project;
    const natForbiddenByProject = p !== "default" && this.ctx.ports.projects.effectiveProject(p, "networks") === p;
    validateProxyConfig(this.config, { natForbiddenByProject });
  }

  async start(): Promise<RunConfig> {
    return { postStart: (pid) => this.run(pid) };
  }

  /** Hot-plug: LXD words a failure as a device start failure. */
  async attach(pid: number): Promise<void> {
    try {
      await this.run(pid);
    } catch (e) {
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  private async run(pid: number): Promise<void> {
    if (this.nat) {
      try {
        await this.setupNat();
      } catch (e) {
        throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
      }
      return;
    }
    await this.startRelay(pid);
  }

  async detach(): Promise<void> {
    await this.stop();
  }

  async stop(): Promise<void> {
    supervised.delete(this.key);
    // Whatever the config says now (it may be stale or invalid): clear both kinds.
    await run("nft", ["-f", "-"], { input: natRemoveScript(natLabel(this.ctx.project, this.ctx.instance, this.name)), reject: false });
    await this.killRelay();
  }

  async rebooted(pid: number): Promise<void> {
    await this.stop();
    await this.run(pid);
  }

  /** The daemon restarted while the instance runs: keep a live relay, restart a dead one. */
  async adopt(pid: number): Promise<void> {
    if (this.nat) {
      await this.setupNat();
      return;
    }
    const relay = this.readRelay();
    const instance = { pid, start: procStartTime(pid) ?? "" };
    if (alive(relay)) {
      supervise(this.key, { relay, instance, restart: () => this.startRelay(pid) });
      return;
    }
    await this.startRelay(pid);
  }

  // ---- the relay ----

  private readRelay(): Relay | undefined {
    try {
      const [pid, start] = readFileSync(this.relayFile, "utf8").trim().split(" ");
      return { pid: Number(pid), start };
    } catch {
      return undefined;
    }
  }

  private async killRelay(): Promise<void> {
    const relay = this.readRelay();
    if (alive(relay)) {
      try {
        process.kill(relay.pid, "SIGTERM");
      } catch {
        /* gone */
      }
      // It removes its socket and exits at once; SIGKILL if it does not.
      for (let i = 0; i < 50 && alive(relay); i++) await new Promise((r) => setTimeout(r, 20));
      if (alive(relay)) {
        try {
          process.kill(relay.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }
    }
    rmSync(this.relayFile, { force: true });
    // A relay inside the container's user namespace cannot remove its socket on the host: do it here.
    this.removeHostSocket();
  }

  private removeHostSocket(): void {
    if (["instance", "guest", "container"].includes(this.config.bind ?? "")) return;
    let listen: ProxyAddress;
    try {
      listen = parseProxyAddr(this.config.listen ?? "");
    } catch {
      return;
    }
    if (listen.connType !== "unix" || listen.abstract) return;
    try {
      if (lstatSync(listen.address).isSocket()) rmSync(listen.address, { force: true });
    } catch {
      /* gone */
    }
  }

  private relayArgs(instancePid: number): string[] {
    const listen = parseProxyAddr(this.config.listen);
    const connect = parseProxyAddr(this.config.connect);
    const instanceSide = ["instance", "guest", "container"].includes(this.config.bind ?? "");
    const side = (a: ProxyAddress, isListen: boolean): string[] => {
      let address = a.address;
      if (a.connType !== "unix" && address === "") address = isListen ? "0.0.0.0" : "127.0.0.1";
      return [a.connType, address, a.ports.join(",")];
    };
    const listenPid = instanceSide ? instancePid : 0;
    const connectPid = instanceSide ? 0 : instancePid;
    const mode = this.config.mode || "0644";
    return [
      String(listenPid),
      ...side(listen, true),
      String(connectPid),
      ...side(connect, false),
      this.config.uid ?? "",
      this.config.gid ?? "",
      listen.connType === "unix" && !listen.abstract ? mode : "",
      this.config["security.uid"] ?? "",
      this.config["security.gid"] ?? "",
      parseBool(this.config.proxy_protocol) ? "true" : "",
      String(instancePid),
    ];
  }

  private async startRelay(instancePid: number): Promise<void> {
    await this.killRelay();
    const args = this.relayArgs(instancePid);
    mkdirSync(this.ctx.logDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.ctx.devicesDir, { recursive: true, mode: 0o711 });
    const log = openSync(this.logFile, "w", 0o600);
    let p: HelperProcess;
    try {
      p = new HelperProcess(helperPath("nodelxd-proxy"), "nodelxd-proxy", args, ["ignore", log, log, "pipe"]);
    } finally {
      closeSync(log);
    }
    const status = await new Promise<string>((resolve) => {
      const s = p.stdio[3]!;
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => resolve("Error: the relay did not start in time"), 10_000);
      s.on("data", (c: Buffer) => chunks.push(c));
      const done = () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString("utf8").trim());
      };
      s.on("end", done);
      s.on("error", done);
    });
    p.stdio[3]?.destroy();
    if (status !== "ok") {
      p.kill("SIGKILL");
      throw new Error(`Error occurred when starting proxy device: ${status || "Error: the relay exited"}`);
    }
    const relay = { pid: p.pid, start: procStartTime(p.pid) ?? "" };
    writeFileSync(this.relayFile, `${relay.pid} ${relay.start}\n`, { mode: 0o600 });
    supervise(this.key, { relay, instance: { pid: instancePid, start: procStartTime(instancePid) ?? "" }, restart: () => this.startRelay(instancePid) });
  }

  // ---- nat=true ----

  private async setupNat(): Promise<void> {
    const listen = parseProxyAddr(this.config.listen);
    const connect = parseProxyAddr(this.config.connect);
    const version = ipVersion(listen.address);
    let connectIP: string | undefined;
    let hostName: string | undefined;
    const devices = this.ctx.expandedDevices?.() ?? {};
    for (const [dev, c] of Object.entries(devices).sort(([a], [b]) => a.localeCompare(b))) {
      if (c.type !== "nic") continue;
      let bridged = c.nictype === "bridged";
      if (c.network) {
        try {
          bridged = this.ctx.ports.networks.get(this.ctx.project, c.network).type === "bridge";
        } catch {
          bridged = false;
        }
      }
      if (!bridged) continue;
      const key = version === 4 ? "ipv4.address" : "ipv6.address";
      const wildcard = version === 4 ? "0.0.0.0" : "::";
      if (c[key] && (connect.address === c[key] || connect.address === wildcard)) {
        connectIP = c[key];
        hostName = this.ctx.volatile.get(`volatile.${dev}.host_name`);
        break;
      }
    }
    if (!connectIP) {
      if (connect.address === "0.0.0.0" || connect.address === "::") throw new Error(`Instance has no static IPv${version} address assigned to be used as the connect IP`);
      throw new Error(`Connect IP ${JSON.stringify(connect.address)} must be one of the instance's static IPv${version} addresses`);
    }
    const nf = `/proc/sys/net/bridge/bridge-nf-call-${version === 4 ? "iptables" : "ip6tables"}`;
    const brNetfilter = existsSync(nf) && readFileSync(nf, "utf8").trim() === "1";
    if (!brNetfilter) {
      this.ctx.log.warn(`IPv${version} bridge netfilter not enabled. Instances using the bridge will not be able to connect to the proxy listen IP`);
    } else {
      if (!hostName) throw new Error("Proxy cannot find bridge port host_name to enable hairpin mode");
      try {
        writeFileSync(`/sys/class/net/${hostName}/brport/hairpin_mode`, "1");
      } catch (e) {
        throw new Error(`Error enabling hairpin mode on bridge port ${JSON.stringify(hostName)}: ${(e as Error).message}`);
      }
    }
    const script = natScript(natLabel(this.ctx.project, this.ctx.instance, this.name), {
      protocol: listen.connType as "tcp" | "udp",
      listenAddress: listen.address,
      listenPorts: listen.ports,
      targetAddress: connectIP,
      targetPorts: connect.ports,
    });
    await run("nft", ["-f", "-"], { input: script });
  }
}
