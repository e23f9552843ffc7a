// `nodelxd init --auto | --preseed | --dump`: a client of the REST API, as upstream `lxd init`.
// A preseed is applied object by object (server config, networks, storage pools, profiles);
// if a step fails, everything done so far is reverted in reverse order.
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import { certFingerprint } from "../daemon/certificates.js";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { parseYaml, stringifyYaml } from "../shared/yaml.js";
import type { ParsedArgs } from "./args.js";
import { expectSuccess } from "./client.js";
import { InitApi, type ClusterPreseed, type Preseed, type StoragePoolPreseed } from "./preseed.js";
export { InitApi, type ClusterPreseed, type NetworkPreseed, type Preseed, type ProfilePreseed, type StoragePoolPreseed } from "./preseed.js";
import { projectQuery } from "../shared/urls.js";

type Config = Record<string, unknown>;

/** The PEM certificate a server presents (upstream lxd init's GetRemoteCertificate). */
function remoteCertificate(address: string): Promise<string> {
  const u = new URL(`https://${address}`);
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || 8443), rejectUnauthorized: false }, () => {
      const der = sock.getPeerCertificate().raw;
      sock.destroy();
      resolve(new X509Certificate(der).toString());
    });
    sock.setTimeout(5000, () => sock.destroy(new Error("timeout")));
    sock.on("error", reject);
  });
}

/** Join with a token (as upstream: find a member answering with the token's certificate, then PUT /1.0/cluster). */
async function joinCluster(api: InitApi, c: ClusterPreseed): Promise<void> {
  let token: { server_name: string; fingerprint: string; addresses: string[] };
  try {
    token = JSON.parse(Buffer.from(c.cluster_token ?? "", "base64").toString("utf8"));
    if (typeof token.server_name !== "string" || !Array.isArray(token.addresses)) throw new Error("bad token");
  } catch {
    throw new Error("Invalid cluster join token");
  }
  let clusterAddress = "";
  let certificate = "";
  for (const address of token.addresses) {
    try {
      const pem = await remoteCertificate(address);
      if (certFingerprint(pem) !== token.fingerprint) throw new Error(`Certificate fingerprint mismatch between join token and cluster member "${address}"`);
      clusterAddress = address;
      certificate = pem;
      break;
    } catch (e) {
      if (/fingerprint mismatch/.test((e as Error).message)) throw e;
      console.log(`Error connecting to existing cluster member "${address}": ${(e as Error).message}`);
    }
  }
  if (!clusterAddress) throw new Error("Unable to connect to any of the cluster members specified in join token");
  try {
    await api.ok("PUT", "/1.0/cluster", {
      server_name: token.server_name,
      enabled: true,
      server_address: c.server_address ?? "",
      cluster_address: clusterAddress,
      cluster_certificate: certificate,
      cluster_password: c.cluster_token,
      member_config: c.member_config ?? [],
    });
  } catch (e) {
    throw new Error(`Failed to join cluster: ${(e as Error).message}`);
  }
}

const YAML_OPTS = { version: "1.1" as const };
const STORAGE_BACKENDS = ["btrfs", "dir", "lvm", "zfs"];

/** Go's fmt %v of a YAML scalar, as upstream stringifies preseed config values. */
const str = (v: unknown): string => (v === null || v === undefined ? "" : String(v));
const strings = (m: Config | undefined): Record<string, string> => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, str(v)]));

export function parsePreseed(text: string): Preseed {
  let doc: unknown;
  try {
    doc = parseYaml(text, YAML_OPTS);
  } catch (e) {
    throw new Error(`Failed to parse the preseed: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw new Error("Failed to parse the preseed: the document is not a mapping");
  const p = doc as Preseed;
  if (p.cluster !== undefined && p.cluster !== null && (typeof p.cluster !== "object" || Array.isArray(p.cluster))) throw new Error("Failed to parse the preseed: cluster must be a mapping");
  if (p.projects !== undefined && p.projects !== null && (!Array.isArray(p.projects) || p.projects.length > 0)) {
    throw new Error("Projects in a preseed are not supported by nodelxd yet: remove the projects section");
  }
  for (const [key, list] of [["networks", p.networks], ["storage_pools", p.storage_pools], ["profiles", p.profiles]] as const) {
    if (list !== undefined && list !== null && !Array.isArray(list)) throw new Error(`Failed to parse the preseed: ${key} must be a list`);
    for (const item of (list ?? []) as { name?: unknown }[]) {
      if (!item || typeof item !== "object" || typeof item.name !== "string" || item.name === "") throw new Error(`Failed to parse the preseed: every entry of ${key} needs a name`);
    }
  }
  return p;
}

class Reverter {
  private steps: (() => Promise<unknown>)[] = [];
  add(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.steps.reverse()) await step().catch(() => {});
    this.steps = [];
  }
}

const enc = encodeURIComponent;

export async function applyPreseed(api: InitApi, p: Preseed): Promise<void> {
  // Joining: the member takes the cluster's state; the rest of the preseed is not applied (as upstream).
  if (p.cluster?.enabled && p.cluster.cluster_token) return joinCluster(api, p.cluster);
  const revert = new Reverter();
  try {
    if (p.config && Object.keys(p.config).length > 0) {
      const current = await api.ok("GET", "/1.0");
      revert.add(() => api.ok("PUT", "/1.0", { config: current.config }));
      const config = { ...current.config, ...strings(p.config) };
      try {
        await api.ok("PUT", "/1.0", { config });
      } catch (e) {
        throw new Error(`Failed to update server configuration: ${(e as Error).message}`);
      }
    }

    for (const net of p.networks ?? []) {
      const project = net.project || "default";
      const q = projectQuery(project);
      const existing = await api.call("GET", `/1.0/networks/${enc(net.name)}${q}`);
      if (existing.status === 200) {
        const current = existing.body.metadata;
        revert.add(() => api.ok("PUT", `/1.0/networks/${enc(net.name)}${q}`, { config: current.config, description: current.description }));
        const body = { config: { ...current.config, ...strings(net.config) }, description: net.description || current.description };
        await api.ok("PUT", `/1.0/networks/${enc(net.name)}${q}`, body).catch((e) => {
          throw new Error(`Failed to update network "${net.name}": ${e.message}`);
        });
      } else {
        await api.ok("POST", `/1.0/networks${q}`, { name: net.name, type: net.type ?? "", description: net.description ?? "", config: strings(net.config) }).catch((e) => {
          throw new Error(`Failed to create network "${net.name}": ${e.message}`);
        });
        revert.add(() => api.ok("DELETE", `/1.0/networks/${enc(net.name)}${q}`));
      }
    }

    for (const pool of p.storage_pools ?? []) {
      const existing = await api.call("GET", `/1.0/storage-pools/${enc(pool.name)}`);
      if (existing.status === 200) {
        const current = existing.body.metadata;
        if (pool.driver && current.driver !== pool.driver) throw new Error(`Storage pool "${pool.name}" is of type "${current.driver}" instead of "${pool.driver}"`);
        revert.add(() => api.ok("PUT", `/1.0/storage-pools/${enc(pool.name)}`, { config: current.config, description: current.description }));
        const body = { config: { ...current.config, ...strings(pool.config) }, description: pool.description || current.description };
        await api.ok("PUT", `/1.0/storage-pools/${enc(pool.name)}`, body).catch((e) => {
          throw new Error(`Failed to update storage pool "${pool.name}": ${e.message}`);
        });
      } else {
        await api.ok("POST", "/1.0/storage-pools", { name: pool.name, driver: pool.driver ?? "", description: pool.description ?? "", config: strings(pool.config) }).catch((e) => {
          throw new Error(`Failed to create storage pool "${pool.name}": ${e.message}`);
        });
        revert.add(() => api.ok("DELETE", `/1.0/storage-pools/${enc(pool.name)}`));
      }
    }

    for (const profile of p.profiles ?? []) {
      const devices = Object.fromEntries(Object.entries(profile.devices ?? {}).map(([k, v]) => [k, strings(v)]));
      const existing = await api.call("GET", `/1.0/profiles/${enc(profile.name)}`);
      if (existing.status === 200) {
        const current = existing.body.metadata;
        revert.add(() => api.ok("PUT", `/1.0/profiles/${enc(profile.name)}`, { config: current.config, description: current.description, devices: current.devices }));
        const merged: Record<string, Record<string, string>> = structuredClone(current.devices ?? {});
        for (const [name, dev] of Object.entries(devices)) merged[name] = { ...(merged[name] ?? {}), ...dev };
        const body = { config: { ...current.config, ...strings(profile.config) }, description: profile.description || current.description, devices: merged };
        await api.ok("PUT", `/1.0/profiles/${enc(profile.name)}`, body).catch((e) => {
          throw new Error(`Failed to update profile "${profile.name}": ${e.message}`);
        });
      } else {
        await api.ok("POST", "/1.0/profiles", { name: profile.name, description: profile.description ?? "", config: strings(profile.config), devices }).catch((e) => {
          throw new Error(`Failed to create profile "${profile.name}": ${e.message}`);
        });
        revert.add(() => api.ok("DELETE", `/1.0/profiles/${enc(profile.name)}`));
      }
    }
    if (p.cluster?.enabled) {
      await api.ok("PUT", "/1.0/cluster", { server_name: p.cluster.server_name ?? "", enabled: true, member_config: [] }).catch((e) => {
        throw new Error(`Failed to enable clustering: ${e.message}`);
      });
    }
  } catch (e) {
    await revert.run();
    throw e;
  }
}

/** GET a collection with recursion; an API that is absent (404/501) reads as empty. */
async function listOrEmpty(api: InitApi, path: string): Promise<any[] | undefined> {
  const r = await api.call("GET", `${path}?recursion=1`);
  if (r.status === 404 || r.status === 501) return undefined;
  return expectSuccess(r) ?? [];
}

export async function dumpPreseed(api: InitApi): Promise<string> {
  const server = await api.ok("GET", "/1.0");
  const doc: Record<string, unknown> = { config: server.config ?? {} };
  const networks = ((await listOrEmpty(api, "/1.0/networks")) ?? []).filter((n) => n.managed);
  if (networks.length) doc.networks = networks.map((n) => ({ config: n.config ?? {}, description: n.description ?? "", name: n.name, type: n.type, project: "default" }));
  const pools = (await listOrEmpty(api, "/1.0/storage-pools")) ?? [];
  if (pools.length) doc.storage_pools = pools.map((s) => ({ config: s.config ?? {}, description: s.description ?? "", name: s.name, driver: s.driver }));
  const profiles = (await listOrEmpty(api, "/1.0/profiles")) ?? [];
  if (profiles.length) doc.profiles = profiles.map((p) => ({ config: p.config ?? {}, description: p.description ?? "", devices: p.devices ?? {}, name: p.name }));
  return stringifyYaml(doc, { ...YAML_OPTS, indentSeq: false }) + "\n";
}

export interface AutoFlags {
  storageBackend: string;
  storageDevice: string;
  storageLoopSize: number;
  storagePool: string;
  networkAddress: string;
  networkPort: number;
  trustPassword: string;
}

function canonicalAddress(address: string, port: number): string {
  const host = address.replace(/^\[|\]$/g, "");
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The preseed `--auto` applies, as upstream builds it. `bridgeName` undefined: no network part. */
export async function autoPreseed(api: InitApi, f: AutoFlags, log: (msg: string) => void, bridgeExists: (name: string) => boolean): Promise<Preseed> {
  if (f.storageBackend !== "" && !STORAGE_BACKENDS.includes(f.storageBackend)) throw new Error(`The requested backend '${f.storageBackend}' isn't supported by lxd init`);
  const server = await api.ok("GET", "/1.0");
  const available: string[] = (server.environment?.storage_supported_drivers ?? []).map((d: { Name: string }) => d.Name);
  if (f.storageBackend !== "" && available.length > 0 && !available.includes(f.storageBackend)) {
    throw new Error(`The requested backend '${f.storageBackend}' isn't available on your system (missing tools)`);
  }
  if (f.storageBackend === "dir" || f.storageBackend === "") {
    if (f.storageLoopSize !== -1 || f.storageDevice !== "" || f.storagePool !== "") {
      throw new Error("None of --storage-pool, --storage-create-device or --storage-create-loop may be used with the 'dir' backend");
    }
  } else if (f.storageLoopSize !== -1 && f.storageDevice !== "") {
    throw new Error("Only one of --storage-create-device or --storage-create-loop can be specified");
  }
  if (f.networkAddress === "") {
    if (f.networkPort !== -1) throw new Error("--network-port can't be used without --network-address");
    if (f.trustPassword !== "") throw new Error("--trust-password can't be used without --network-address");
  }

  const preseed: Preseed = { config: {} };
  if (f.networkAddress !== "") {
    preseed.config!["core.https_address"] = canonicalAddress(f.networkAddress, f.networkPort === -1 ? 8443 : f.networkPort);
    if (f.trustPassword !== "") preseed.config!["core.trust_password"] = f.trustPassword;
  }

  const pools = await api.call("GET", "/1.0/storage-pools");
  const poolNames: string[] = pools.status === 200 ? pools.body.metadata : [];
  if (pools.status === 404 || pools.status === 501) throw new Error("Storage pools API not available on this server: cannot create the default storage pool");
  if (pools.status !== 200) throw new Error(`Failed to list storage pools: ${pools.body?.error ?? `HTTP ${pools.status}`}`);
  if (poolNames.length === 0) {
    const pool: StoragePoolPreseed = { name: "default", driver: f.storageBackend || "dir", config: {} };
    if (f.storageDevice !== "") pool.config!.source = f.storageDevice;
    else if (f.storageLoopSize > 0) pool.config!.size = `${f.storageLoopSize}GB`;
    else if (f.storagePool !== "") pool.config!.source = f.storagePool;
    if (f.storagePool !== "" && (f.storageDevice !== "" || f.storageLoopSize !== -1)) pool.name = f.storagePool;
    preseed.storage_pools = [pool];
    preseed.profiles = [{ name: "default", devices: { root: { type: "disk", path: "/", pool: pool.name } } }];
  }

  const networks = await api.call("GET", "/1.0/networks?recursion=1");
  if (networks.status === 404 || networks.status === 501) {
    log("Networks API not available on this server: skipping the default bridge (lxdbr0)");
  } else {
    const managed = (expectSuccess(networks) ?? []).some((n: { managed: boolean }) => n.managed);
    // As LXD: no bridge either when the default profile has a NIC already (LXD's suite adds one).
    const profile = await api.call("GET", "/1.0/profiles/default");
    const devices = (profile.status === 200 ? profile.body?.metadata?.devices : undefined) as Record<string, { type?: string }> | undefined;
    const profileNic = Object.values(devices ?? {}).some((d) => d?.type === "nic");
    if (!managed && !profileNic) {
      let idx = 0;
      while (bridgeExists(`lxdbr${idx}`)) idx++;
      const name = `lxdbr${idx}`;
      preseed.networks = [{ name, project: "default", config: {} }];
      const nic = { type: "nic", network: name, name: "eth0" };
      if (!preseed.profiles) preseed.profiles = [{ name: "default", devices: { eth0: nic } }];
      else preseed.profiles[0].devices!.eth0 = nic;
    }
  }
  return preseed;
}

const flag = (args: ParsedArgs, name: string): string => {
  const v = args.flags[name];
  return typeof v === "string" ? v : "";
};
const intFlag = (args: ParsedArgs, name: string): number => {
  const v = flag(args, name);
  if (v === "") return -1;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`invalid argument "${v}" for "--${name}" flag: strconv.ParseInt: parsing "${v}": invalid syntax`);
  return n;
};

export async function initCommand(args: ParsedArgs, socket: string): Promise<number> {
  const auto = !!args.flags.auto;
  const minimal = !!args.flags.minimal;
  const preseed = !!args.flags.preseed;
  const dump = !!args.flags.dump;
  const f: AutoFlags = {
    storageBackend: flag(args, "storage-backend"),
    storageDevice: flag(args, "storage-create-device"),
    storageLoopSize: intFlag(args, "storage-create-loop"),
    storagePool: flag(args, "storage-pool"),
    networkAddress: flag(args, "network-address"),
    networkPort: intFlag(args, "network-port"),
    trustPassword: flag(args, "trust-password"),
  };
  const configFlags = f.storageBackend || f.storageDevice || f.storageLoopSize !== -1 || f.storagePool || f.networkAddress || f.networkPort !== -1 || f.trustPassword;
  if (auto && preseed) throw new Error("Can't use --auto and --preseed together");
  if (minimal && preseed) throw new Error("Can't use --minimal and --preseed together");
  if (minimal && auto) throw new Error("Can't use --minimal and --auto together");
  if (!auto && configFlags) throw new Error("Configuration flags require --auto");
  if (dump && (auto || minimal || preseed)) throw new Error("Can't use --dump with other flags");

  const api = new InitApi(socket);
  if (dump) {
    process.stdout.write(await dumpPreseed(api));
    return 0;
  }
  if (preseed) {
    await applyPreseed(api, parsePreseed(readFileSync(0, "utf8")));
    return 0;
  }
  if (auto || minimal) {
    const { existsSync } = await import("node:fs");
    const p = await autoPreseed(api, f, (m) => process.stderr.write(m + "\n"), (name) => existsSync(`/sys/class/net/${name}`));
    await applyPreseed(api, p);
    return 0;
  }
  const { interactivePreseed, renderPreseed } = await import("./init-interactive.js");
  const { resolveLxdDir } = await import("../daemon/paths.js");
  const { preseed: p, print } = await interactivePreseed(api, resolveLxdDir());
  if (print) process.stdout.write(renderPreseed(p) + "\n");
  await applyPreseed(api, p);
  return 0;
}
