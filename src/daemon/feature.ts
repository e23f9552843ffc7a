// What a feature module is, and what the daemon hands it.
import type { Logger } from "pino";
import type { Route } from "../api/route.js";
import type { UpgradeRoute } from "../api/websocket.js";
import type { Db } from "../db/database.js";
import type { WarningRepo } from "../db/warning-repo.js";
import type { EventHub } from "../operations/events.js";
import type { OperationManager } from "../operations/manager.js";
import type { KeyPair } from "./certificates.js";
import type { HostInfo } from "./host-info.js";
import type { Paths } from "./paths.js";
import type { ServerService } from "./server-service.js";
import type { TrustStore } from "./trust.js";

/**
 * What the daemon shares with its feature modules (the composition root). Features hand the
 * services they build only the few of these they use; the ports between features are wired
 * in features/index.ts, not carried here.
 */
export interface Core {
  paths: Paths;
  db: Db;
  log: Logger;
  events: EventHub;
  operations: OperationManager;
  warnings: WarningRepo;
  server: ServerService;
  trust: TrustStore;
  host: HostInfo;
  keypair: KeyPair;
}

/**
 * A feature module (instances, storage, networks, ...): contributes routes, and may take part
 * in start-up (after the database opens, before listening) and shutdown.
 */
export interface Feature {
  name: string;
  routes(): Route[];
  /** Raw protocol upgrades (not websockets), e.g. the instance sftp endpoint. */
  upgrades?(): UpgradeRoute[];
  start?(): Promise<void>;
  /** Settles when the work begun at start that `waitready` waits for is done (LXD: instance autostart). */
  ready?(): Promise<void>;
  /** Daemon stopping. `stopInstances` is true for `lxd shutdown` and SIGPWR, false for SIGTERM. */
  stop?(opts: { stopInstances: boolean }): Promise<void>;
}
