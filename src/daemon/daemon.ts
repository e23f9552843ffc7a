// Wiring and lifecycle: open the state, build services, serve, and stop cleanly.
import { chmodSync, mkdirSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { buildApi, mergeRoutes } from "../api/server.js";
import { apiExtensions } from "../api/extensions.js";
import type { Route } from "../api/route.js";
import { isAdmin } from "../api/access.js";
import { certificateRoutes } from "../api/routes/certificates.js";
import { sqlRoutes } from "../api/routes/sql.js";
import { internalRoutes } from "../api/routes/internal.js";
import { operationRoutes } from "../api/routes/operations.js";
import { eventRoutes } from "../api/routes/events.js";
import { resourceRoutes } from "../api/routes/resources.js";
import { rootRoutes } from "../api/routes/root.js";
import { warningRoutes } from "../api/routes/warnings.js";
import { clusterRoutes } from "../api/routes/cluster.js";
import { clusterGroupRoutes } from "../api/routes/cluster-groups.js";
import { ClusterService } from "../cluster/service.js";
import { ClusterRouter } from "../cluster/router.js";
import { attachWebsockets } from "../api/websocket.js";
import { CertificateRepo } from "../db/certificate-repo.js";
import { ConfigRepo } from "../db/config-repo.js";
import { closeDatabase, localConnection, localMember, openDatabase } from "../db/database.js";
import { TestingWarnings } from "./testing-warnings.js";
import { adoptLegacyDatabase } from "../db/legacy-layout.js";
import { applyPatchFiles } from "../db/patch-files.js";
import { linkSettings } from "../os/native.js";
import { WarningRepo } from "../db/warning-repo.js";
import { hostCgroupLayout } from "../instances/lxc/cgroup.js";
import { hostFacts, hostWarnings } from "./host-warnings.js";
import { EventHub } from "../operations/events.js";
import { OperationManager } from "../operations/manager.js";
import { CertificateService } from "./certificate-service.js";
import { ensureServerCertificate } from "./certificates.js";
import { Endpoints } from "./endpoints.js";
import { encode, errorEnvelope } from "../shared/envelope.js";
import { wireFeatures, type Wiring } from "./features/index.js";
import { readHostInfo } from "./host-info.js";
import { createLogger } from "./logging.js";
import { layout, pathsFor } from "./paths.js";
import type { Core, Feature } from "./feature.js";
import type { Ports } from "../ports.js";
import { ResourcesService } from "./resources/index.js";
import { ServerService } from "./server-service.js";
import { SqlService } from "./sql-service.js";
import { TrustStore } from "./trust.js";
import { ExternalAuth } from "./candid/external-auth.js";
import { RootKeyStore } from "./candid/root-keys.js";
import { loadCertificateAuthority } from "./pki.js";
import { parseBool } from "../config/validators.js";

export interface DaemonOptions {
  lxdDir: string;
  group?: string;
  logfile?: string;
  debug?: boolean;
  verbose?: boolean;
  /** etcd client URLs a first cluster member bootstraps on (joiners learn them from the cluster). */
  etcdEndpoints?: string[];
}

export class Daemon {
  private ready = false;
  private stopping?: Promise<void>;
  private endpoints?: Endpoints;
  private app?: FastifyInstance;
  private loaded: Feature[] = [];
  private cluster?: ClusterService;
  core?: Core;
  private wiring?: Wiring;
  /** The ports between features, as wired (tests reach services through them). */
  get ports(): Ports | undefined {
    return this.wiring?.ports;
  }
  /** The route table served (every path, its handlers and who may call them), once started. */
  routes: Route[] = [];
  /** Resolves when the daemon has fully stopped. */
  readonly stopped: Promise<void>;
  private resolveStopped!: () => void;

  constructor(private readonly opts: DaemonOptions) {
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  async start(): Promise<void> {
    const paths = pathsFor(this.opts.lxdDir);
    for (const [dir, mode] of layout(paths)) {
      mkdirSync(dir, { recursive: true, mode });
      chmodSync(dir, mode);
    }
    // A first start's certificate comes from an openssl process: it runs while the database opens.
    const certificate = ensureServerCertificate(paths.serverCert, paths.serverKey);
    certificate.catch(() => undefined); // awaited below (a failure before then is not left unhandled)
    const events = new EventHub();
    const log = createLogger({ logfile: this.opts.logfile, debug: this.opts.debug, verbose: this.opts.verbose, events });
    adoptLegacyDatabase(paths.legacyDatabaseFile, paths.databaseFile);
    const db = openDatabase(paths.databaseFile, undefined, { localFile: paths.localDatabaseFile });
    try {
      applyPatchFiles({ local: { db: localConnection(db), file: paths.localDatabaseFile }, global: { db, file: paths.databaseFile } }, paths.database, log);
    } catch (e) {
      closeDatabase(db);
      throw e;
    }
    const operations = new OperationManager(db, events, log);
    const interrupted = operations.recoverInterrupted();
    if (interrupted) log.warn({ count: interrupted }, "marked operations interrupted by a restart as failed");
    const host = readHostInfo();
    const keypair = await certificate;
    const ca = await loadCertificateAuthority(this.opts.lxdDir);
    if (ca) log.info("LXD is in CA mode, only CA-signed certificates will be allowed");
    const externalAuth = new ExternalAuth(new RootKeyStore(db));
    const trust = new TrustStore(db, { ca, trustCa: () => parseBool(this.core?.server.get("core.trust_ca_certificates")), externalAuth });
    const warnings = new WarningRepo(db);
    // As LXD at start: raise what this host lacks, and resolve what was not seen again.
    const startedAt = new Date().toISOString();
    for (const w of hostWarnings(hostFacts(hostCgroupLayout()))) warnings.record(w.type, w.message);
    warnings.resolveOlderThan(startedAt);

    const server = new ServerService({
      repo: new ConfigRepo(db),
      events,
      host,
      certificate: keypair,
      apiExtensions,
      check: async (key, value) => {
        if (key === "storage.backups_volume" || key === "storage.images_volume") await this.wiring?.daemonStorage.validate(key, value);
      },
      apply: async (key, value, previous, config) => {
        if (key === "storage.backups_volume" || key === "storage.images_volume") await this.wiring?.daemonStorage.move(key, value, previous);
        if (key === "core.https_address") await this.endpoints?.setHttpsAddress(value);
        if (key === "core.dns_address") await this.wiring?.dns.setAddress(value);
        if (key.startsWith("core.bgp_")) await this.applyBgp(config);
        if (key === "core.metrics_address") await this.endpoints?.setMetricsAddress(value);
        if (key.startsWith("candid.")) configureCandid(externalAuth, config);
      },
    });
    try {
      configureCandid(externalAuth, Object.fromEntries(["candid.api.url", "candid.api.key", "candid.expiry", "candid.domains"].map((k) => [k, server.get(k) ?? ""])));
    } catch (e) {
      log.error({ err: e }, "failed to set up external authentication");
    }
    const core: Core = { paths, db, log, events, operations, warnings, server, trust, host, keypair };
    const cluster = new ClusterService({
      paths,
      db,
      log,
      events,
      operations,
      server,
      trust,
      keypair,
      architecture: host.kernel_architecture,
      etcdEndpoints: this.opts.etcdEndpoints ?? [],
      setTls: (tls) => this.endpoints?.setTls(tls) ?? Promise.resolve(),
      localStatuses: () => this.wiring?.ports.instances.localStatuses() ?? {},
      adoptPools: async () => (await this.wiring?.ports.storage.adoptPools()) ?? {},
      claimLocalVolumes: (member) => this.wiring?.ports.storage.claimLocalVolumes(member),
    });
    this.cluster = cluster;
    const projectExists = (name: string) => db.prepare("SELECT 1 FROM projects WHERE name = ?").get(name) !== undefined;
    this.core = core;
    const wiring = (this.wiring = wireFeatures(core, cluster));
    this.loaded = wiring.features;

    const routes: Route[] = [
      ...rootRoutes(server),
      ...operationRoutes(operations, { clustered: () => cluster.clustered(), list: (query, req) => cluster.remoteOperations(query, req.requestor) }),
      ...eventRoutes(projectExists),
      ...warningRoutes(warnings, new TestingWarnings(db, warnings, () => localMember(db))),
      ...certificateRoutes(
        new CertificateService({ repo: new CertificateRepo(db), trust, events, operations, server, serverFingerprint: keypair.fingerprint, projectExists }),
      ),
      ...resourceRoutes(new ResourcesService(host.kernel_architecture, undefined, linkSettings)),
      ...sqlRoutes(new SqlService(db)),
      ...clusterGroupRoutes(cluster.groups),
      ...clusterRoutes(cluster, operations, (name, action, progress) => wiring.evacuation.run(name, action, progress)),
      ...internalRoutes({ isReady: () => this.ready, shutdown: ({ force }) => void this.stop({ stopInstances: true, force }) }),
      ...this.loaded.flatMap((f) => f.routes()),
    ];
    this.routes = mergeRoutes(routes);
    this.app = await buildApi({
      routes: this.routes,
      log,
      identify: (req) => trust.identify(req.raw),
      effectiveProject: (project, feature) => wiring.ports.projects.effectiveProject(project, feature),
      dischargeRequired: (path, version) => externalAuth.dischargeRequired(path, version),
    });
    const app = this.app;
    const router = new ClusterRouter({ cluster, db, log, operations, identify: (req) => trust.identify(req) });
    this.endpoints = new Endpoints({
      socketPath: paths.socket,
      group: this.opts.group,
      tls: { ...keypair, ca: ca?.pem },
      handler: router.handler((req, res) => {
        // GET /1.0 is what every client asks first and most often: serve its cached envelope
        // without going through the router (headers every response needs must be added here too).
        // (X-LXD-authenticated: a client insisting on trust goes through the router's 403.)
        const who = req.method === "GET" && req.url === "/1.0" && !req.headers["x-lxd-authenticated"] ? trust.identify(req) : undefined;
        if (who && !who.authError) {
          const doc = server.document(who.trusted, isAdmin(who));
          res.writeHead(200, { "content-type": "application/json", "content-length": doc.body.length, etag: `"${doc.etag}"` });
          res.end(doc.body);
          return;
        }
        app.routing(req, res);
      }),
      metricsHandler: (req, res) => {
        if (req.method === "GET" && (req.url ?? "").split("?")[0] === "/1.0/metrics") return app.routing(req, res);
        const body = encode(errorEnvelope(404, "not found"));
        res.writeHead(404, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      },
      onServer: (s) => {
        attachWebsockets(s, { events, operations, log, identify: (req) => trust.identify(req), projectExists, upgrades: this.loaded.flatMap((f) => f.upgrades?.() ?? []) });
        // Websockets of operations living on another member are spliced through to it first.
        const local = s.listeners("upgrade") as ((...a: unknown[]) => void)[];
        s.removeAllListeners("upgrade");
        s.on("upgrade", (req, socket, head) => {
          if (!router.upgrade(req, socket, head)) for (const l of local) l(req, socket, head);
        });
      },
      log,
    });
    for (const f of this.loaded) await f.start?.();
    await cluster.start();
    if (cluster.clustered()) await this.endpoints.setTls(cluster.certificate());
    await this.endpoints.listenUnix();
    const httpsAddress = server.get("core.https_address");
    if (httpsAddress) {
      await this.endpoints.setHttpsAddress(httpsAddress).catch((e) => log.error({ err: e }, "cannot bind core.https_address"));
    }
    const dnsAddress = server.get("core.dns_address");
    if (dnsAddress) await wiring.dns.setAddress(dnsAddress).catch((e) => log.error({ err: e }, "cannot bind core.dns_address"));
    await this.applyBgp().catch((e) => log.error({ err: e }, "cannot start the BGP server"));
    const metricsAddress = server.get("core.metrics_address");
    if (metricsAddress) {
      await this.endpoints.setMetricsAddress(metricsAddress).catch((e) => log.error({ err: e }, "cannot bind core.metrics_address"));
    }
    // As LXD, /internal/ready answers once autostarted instances are up (the API serves meanwhile).
    for (const f of this.loaded) await f.ready?.();
    this.ready = true;
    log.info({ dir: paths.dir, pid: process.pid }, "daemon started");
  }

  /** core.bgp_address/asn/routerid → the BGP speaker (started when all three are set). */
  private async applyBgp(config?: Record<string, string>): Promise<void> {
    const server = this.core?.server;
    if (!server) return;
    const get = (k: string) => (config ? config[k] : server.get(k)) ?? "";
    await this.wiring?.bgp.reconfigure(get("core.bgp_address"), Number(get("core.bgp_asn") || 0), get("core.bgp_routerid"));
  }

  isReady(): boolean {
    return this.ready;
  }

  stop(opts: { stopInstances: boolean; force?: boolean }): Promise<void> {
    this.stopping ??= (async () => {
      const log = this.core?.log;
      log?.info(opts, "daemon stopping");
      this.ready = false;
      try {
        for (const f of [...this.loaded].reverse()) await f.stop?.(opts).catch((e) => log?.error({ err: e, feature: f.name }, "feature stop failed"));
        this.core?.operations.abortAll();
        await this.cluster?.stop().catch((e) => log?.error({ err: e }, "cluster stop failed"));
        await this.endpoints?.close();
        await this.app?.close();
        if (this.core) closeDatabase(this.core.db);
      } finally {
        this.resolveStopped();
      }
    })();
    return this.stopping;
  }
}

/** LXD's setupExternalAuthentication from the candid.* keys of `config` (throws on a bad candid.api.key). */
function configureCandid(auth: ExternalAuth, config: Record<string, string>): void {
  auth.configure(config["candid.api.url"] ?? "", config["candid.api.key"] ?? "", Number(config["candid.expiry"] || "3600"), config["candid.domains"] ?? "");
}
