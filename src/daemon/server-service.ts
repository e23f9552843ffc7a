// The server object of GET/PUT/PATCH /1.0: configuration rules, environment, and live
// application of changed keys (core.https_address).
import { networkInterfaces } from "node:os";
import { ApiError, BadRequest } from "../shared/errors.js";
import { encode, syncEnvelope } from "../shared/envelope.js";
import { etagOf } from "../shared/etag.js";
import type { ConfigRepo } from "../db/config-repo.js";
import { validateConfig } from "../config/keys.js";
import { serverKeys } from "../config/server-keys.js";
import { splitHostPort } from "../config/validators.js";
import type { EventHub } from "../operations/events.js";
import type { HostInfo } from "./host-info.js";
import { hashPassword } from "./trust-password.js";

export interface StorageEnvironment {
  storage: string;
  storage_version: string;
  storage_supported_drivers: { Name: string; Version: string; Remote: boolean }[];
}

export interface ServerServiceDeps {
  repo: ConfigRepo;
  events: EventHub;
  host: HostInfo;
  certificate: { cert: string; fingerprint: string };
  apiExtensions: string[];
  /** Apply a changed key to the running daemon; throwing rejects the change. */
  /** A key changed; `config` is the whole config being applied (keys that go together, e.g. core.bgp_*). */
  apply?: (key: string, value: string, previous: string, config: Record<string, string>) => Promise<void>;
  storage?: () => StorageEnvironment;
  /** Check a changed key against the daemon's state before anything is applied; its error is the answer. */
  check?: (key: string, value: string) => Promise<void>;
}

export class ServerService {
  private config: Record<string, string>;
  private cache = new Map<string, { body: Buffer; etag: string }>();
  /** Set by the storage feature; it calls invalidate() whenever what it reports changes. */
  private storageInfo?: () => StorageEnvironment;
  private clusterInfo?: () => { clustered: boolean; name: string; certificate: { cert: string; fingerprint: string } };

  constructor(private readonly deps: ServerServiceDeps) {
    this.config = deps.repo.all();
  }

  get(key: string): string | undefined {
    return this.config[key];
  }

  /** The config as shown to clients (secrets shown as `true`). */
  visibleConfig(): Record<string, string | boolean> {
    const out: Record<string, string | boolean> = {};
    for (const [k, v] of Object.entries(this.config)) out[k] = serverKeys[k]?.hidden ? true : v;
    return out;
  }

  etag(): string {
    return etagOf(this.visibleConfig());
  }

  /** Provide environment.storage* (cached like the rest of GET /1.0 until invalidate()). */
  setStorageInfo(fn: () => StorageEnvironment): void {
    this.storageInfo = fn;
    this.invalidate();
  }

  invalidate(): void {
    this.cache.clear();
  }

  /** Re-read the config (another cluster member changed it). */
  reload(): void {
    this.config = this.deps.repo.all();
    this.invalidate();
  }

  /** Clustering facts for GET /1.0 (server_clustered, server_name, the cluster certificate). */
  setClusterInfo(fn: () => { clustered: boolean; name: string; certificate: { cert: string; fingerprint: string } }): void {
    this.clusterInfo = fn;
    this.invalidate();
  }

  addresses(): string[] {
    const address = this.config["core.https_address"];
    if (!address) return [];
    const { host, port } = splitHostPort(address);
    if (host !== "" && host !== "::" && host !== "0.0.0.0") return [address];
    const out: string[] = [];
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.internal || (host === "0.0.0.0" && a.family !== "IPv4")) continue;
        if (a.family === "IPv6" && a.scopeid) continue;
        out.push(a.family === "IPv6" ? `[${a.address}]:${port}` : `${a.address}:${port}`);
      }
    }
    return out;
  }

  /**
   * The encoded GET /1.0 envelope; cached until something it shows changes. A trusted client
   * that is not an admin (a restricted certificate) gets no config, as LXD's `config: null`.
   */
  document(trusted: boolean, admin = trusted): { body: Buffer; etag: string } {
    const cacheKey = !trusted ? "untrusted" : admin ? "trusted" : "restricted";
    // LXD advertises candid when Candid is set up (and with RBAC, which nodelxd does not implement).
    const authMethods = this.config["candid.api.url"] ? ["tls", "candid"] : ["tls"];
    const hit = this.cache.get(cacheKey);
    if (hit) return hit;
    const common = { api_extensions: this.deps.apiExtensions, api_status: "stable", api_version: "1.0" };
    const metadata = trusted
      ? {
          config: admin ? this.visibleConfig() : null,
          ...common,
          auth: "trusted",
          public: false,
          auth_methods: authMethods,
          environment: this.environment(),
        }
      : { ...common, auth: "untrusted", public: false, auth_methods: authMethods };
    const doc = { body: Buffer.from(encode(syncEnvelope(metadata))), etag: admin || !trusted ? this.etag() : etagOf(null) };
    // Storage facts can change without a config change; only cache when nothing depends on them.
    if (!this.deps.storage || !trusted) this.cache.set(cacheKey, doc);
    return doc;
  }

  private environment() {
    const h = this.deps.host;
    const cluster = this.clusterInfo?.();
    const certificate = cluster?.clustered ? cluster.certificate : this.deps.certificate;
    const storage = (this.storageInfo ?? this.deps.storage)?.() ?? { storage: "", storage_version: "", storage_supported_drivers: [] };
    return {
      addresses: this.addresses(),
      architectures: h.architectures,
      certificate: certificate.cert,
      certificate_fingerprint: certificate.fingerprint,
      driver: h.driver,
      driver_version: h.driver_version,
      firewall: h.firewall,
      kernel: h.kernel,
      kernel_architecture: h.kernel_architecture,
      kernel_features: h.kernel_features,
      kernel_version: h.kernel_version,
      lxc_features: h.lxc_features,
      os_name: h.os_name,
      os_version: h.os_version,
      project: "default",
      server: "lxd",
      server_clustered: cluster?.clustered ?? false,
      server_event_mode: "full-mesh",
      server_name: cluster?.clustered ? cluster.name : h.server_name,
      server_pid: process.pid,
      server_version: "5.0.2",
      ...storage,
    };
  }

  /** PUT (replace) or PATCH (merge; "" unsets) the server config. */
  async update(changes: Record<string, string>, mode: "replace" | "merge"): Promise<void> {
    // LXD checks the request's own keys: Candid and RBAC (both set to something) exclude each other.
    const given = Object.entries(changes).filter(([, v]) => v !== "");
    if (given.some(([k]) => k.startsWith("candid.")) && given.some(([k]) => k.startsWith("rbac."))) throw new BadRequest("RBAC and Candid are mutually exclusive");
    const next: Record<string, string> = mode === "replace" ? {} : { ...this.config };
    for (const [k, v] of Object.entries(changes)) next[k] = v;
    // A hidden key sent back as the placeholder it was shown as keeps its value.
    for (const [k, spec] of Object.entries(serverKeys)) {
      if (spec.hidden && (next[k] as unknown) === true) next[k] = this.config[k] ?? "";
    }
    try {
      validateConfig(serverKeys, next);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    for (const k of Object.keys(next)) if (next[k] === "") delete next[k];
    const password = next["core.trust_password"];
    if (password !== undefined && password !== this.config["core.trust_password"]) next["core.trust_password"] = hashPassword(password);
    const previous = this.config;
    const changed = [...new Set([...Object.keys(previous), ...Object.keys(next)])].filter((k) => previous[k] !== next[k]);
    for (const key of changed) {
      try {
        await this.deps.check?.(key, next[key] ?? "");
      } catch (e) {
        throw e instanceof ApiError ? e : new BadRequest((e as Error).message);
      }
    }
    const applied: string[] = [];
    try {
      for (const key of changed) {
        await this.deps.apply?.(key, next[key] ?? "", previous[key] ?? "", next);
        applied.push(key);
      }
    } catch (e) {
      for (const key of applied.reverse()) await this.deps.apply?.(key, previous[key] ?? "", next[key] ?? "", previous).catch(() => {});
      throw new BadRequest((e as Error).message);
    }
    this.deps.repo.replace(next);
    this.config = next;
    this.invalidate();
    this.deps.events.lifecycle("config-updated", "/1.0");
  }
}
