// `lxd activateifneeded`: decide, from the database alone (no daemon), whether the daemon should
// be started now, and if so connect to its socket (which starts a socket-activated daemon). The
// checks and their debug messages are LXD's, in LXD's order: a network listener, instances that
// are running or were running / are set to autostart, scheduled instance or volume snapshots.
import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import type { ParsedArgs } from "./args.js";
import { pathsFor, resolveLxdDir } from "../daemon/paths.js";
import { isAlive } from "../instances/lxc/driver.js";
import { apiRequest, expectSuccess } from "./client.js";

const isTrue = (v: string | undefined) => v !== undefined && ["true", "1", "yes", "on"].includes(v.toLowerCase());

function json<T>(text: string | null | undefined, fallback: T): T {
  try {
    return text ? (JSON.parse(text) as T) : fallback;
  } catch {
    return fallback;
  }
}

export async function activateIfNeededCommand(args: ParsedArgs, socket: string): Promise<number> {
  if (process.geteuid?.() !== 0) throw new Error("This must be run as root");
  const debug = !!(args.flags.debug || args.flags.d);
  const log = (msg: string) => {
    if (debug) process.stderr.write(`time="${new Date().toISOString().replace(/\.\d+Z$/, "Z")}" level=debug msg="${msg}"\n`);
  };
  const activate = async (why: string) => {
    log(why);
    expectSuccess(await apiRequest(socket, "GET", "/1.0"));
    return 0;
  };

  const paths = pathsFor(resolveLxdDir());
  // An install from before LXD's layout has its one file until the daemon next starts.
  const legacy = !existsSync(paths.databaseFile) && existsSync(paths.legacyDatabaseFile);
  if (!legacy && !(existsSync(paths.localDatabaseFile) && existsSync(paths.databaseFile))) {
    log("No local database, so no need to start the daemon now");
    return 0;
  }
  const db = new Database(legacy ? paths.legacyDatabaseFile : paths.databaseFile, { readonly: true, fileMustExist: true });
  try {
    // Member-local keys (core.https_address) are in the local database's config.
    const localConfig = new Map<string, string>();
    if (!legacy) {
      const local = new Database(paths.localDatabaseFile, { readonly: true, fileMustExist: true });
      try {
        for (const r of local.prepare("SELECT key, value FROM config").all() as { key: string; value: string | null }[]) if (r.value !== null) localConfig.set(r.key, r.value);
      } finally {
        local.close();
      }
    }
    const get = (key: string) => localConfig.get(key) ?? (db.prepare("SELECT value FROM config WHERE key = ?").get(key) as { value: string } | undefined)?.value;
    if (get("core.https_address")) return await activate("Daemon has core.https_address set, activating...");

    const projects = new Map((db.prepare("SELECT name, config FROM projects").all() as { name: string; config: string }[]).map((p) => [p.name, json<Record<string, string>>(p.config, {})]));
    const profileConfig = db.prepare("SELECT config FROM profiles WHERE project = ? AND name = ?");
    const instances = db.prepare("SELECT project, name, config, profiles, init_pid, init_start FROM instances").all() as { project: string; name: string; config: string; profiles: string; init_pid: number; init_start: string }[];
    for (const inst of instances) {
      const profileProject = isTrue(projects.get(inst.project)?.["features.profiles"]) ? inst.project : "default";
      const config: Record<string, string> = {};
      for (const p of json<string[]>(inst.profiles, [])) Object.assign(config, json(((profileConfig.get(profileProject, p) as { config: string } | undefined)?.config), {}));
      Object.assign(config, json(inst.config, {}));

      if (inst.init_pid > 0 && isAlive({ pid: inst.init_pid, startTime: inst.init_start })) return await activate("Daemon has running instances, activating...");
      const lastState = config["volatile.last_state.power"];
      if (lastState === "RUNNING" || lastState === "Running" || isTrue(config["boot.autostart"])) return await activate("Daemon has auto-started instances, activating...");
      if (config["snapshots.schedule"]) return await activate("Daemon has scheduled instance snapshots, activating...");
    }

    const volumes = db.prepare("SELECT config FROM storage_volumes WHERE type = 'custom'").all() as { config: string }[];
    for (const v of volumes) if (json<Record<string, string>>(v.config, {})["snapshots.schedule"]) return await activate("Daemon has scheduled volume snapshots, activating...");
  } finally {
    db.close();
  }
  log("No need to start the daemon now");
  return 0;
}
