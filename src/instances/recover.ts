// `lxd recover` for instances (LXD's internalRecoverImportInstance): the instance, snapshot and
// volume records come back from the backup.yaml in the instance volume; the files stay as they
// are. An instance whose container still runs (its records were lost under it) is adopted.
import { Conflict } from "../shared/errors.js";
import type { InstanceRow } from "../db/instance-repo.js";
import type { Devices } from "./rows.js";
import { instanceUrl } from "./rows.js";
import { parseExpiry, ZERO_TIME } from "./snapshots.js";
import type { InstanceService } from "./service.js";

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
const strings = (m: unknown): Record<string, string> => Object.fromEntries(Object.entries(obj(m)).map(([k, v]) => [k, String(v)]));
const devicesOf = (m: unknown): Devices => Object.fromEntries(Object.entries(obj(m)).map(([k, v]) => [k, strings(v)]));
const time = (v: unknown, fallback: string): string => {
  if (typeof v !== "string" || v === "") return fallback;
  const t = new Date(v);
  return Number.isNaN(t.getTime()) ? fallback : t.toISOString();
};

export class InstanceRecovery {
  constructor(
    private readonly svc: InstanceService,
    /** Adopt the instance when its container runs (the watcher's reconcile). */
    private readonly adoptRunning: (row: InstanceRow) => Promise<boolean>,
  ) {}

  /** What must exist before the instance can come back (LXD's DependencyErrors wording). */
  dependencies(project: string, backup: Obj): string[] {
    const out: string[] = [];
    const ports = this.svc.deps.ports;
    const profiles = Array.isArray(obj(backup.container).profiles) ? (obj(backup.container).profiles as unknown[]).map(String) : [];
    for (const p of profiles) {
      try {
        ports.profiles.get(project, p);
      } catch {
        out.push(`Profile "${p}" in project "${project}"`);
      }
    }
    return out;
  }

  /** Recreate the records of an instance from its backup.yaml; the volume is already on `pool`. */
  async recover(pool: string, project: string, name: string, backup: Obj): Promise<void> {
    if (this.svc.repo.get(project, name)) throw new Conflict(`Instance "${name}" already exists`);
    const c = obj(backup.container);
    const storage = this.svc.deps.ports.storage;
    const profiles = Array.isArray(c.profiles) ? (c.profiles as unknown[]).map(String) : ["default"];
    const config = strings(c.config);
    // The container may run (records lost under it): the watcher finds that out below.
    this.svc.repo.insert({
      project,
      name,
      type: "container",
      architecture: String(c.architecture || this.svc.deps.host.kernel_architecture),
      ephemeral: Boolean(c.ephemeral),
      stateful: Boolean(c.stateful),
      description: String(c.description ?? ""),
      config,
      devices: devicesOf(c.devices),
      profiles,
      created_at: time(c.created_at, new Date().toISOString()),
      last_used_at: time(c.last_used_at, "1970-01-01T00:00:00Z"),
      init_pid: 0,
      init_start: "",
    });
    const row = this.svc.require(project, name);
    try {
      const snaps = Array.isArray(backup.snapshots) ? (backup.snapshots as unknown[]).map(obj) : [];
      for (const s of snaps) {
        const snapName = String(s.name ?? "").split("/").pop()!;
        this.svc.snapshots.repo.insert({
          instanceId: row.id,
          name: snapName,
          createdAt: time(s.created_at, new Date().toISOString()),
          expiresAt: typeof s.expires_at === "string" && s.expires_at && !s.expires_at.startsWith("0001-") ? parseExpiry(s.expires_at) : ZERO_TIME,
          stateful: Boolean(s.stateful),
          description: String(s.description ?? ""),
          architecture: String(s.architecture || row.architecture),
          ephemeral: Boolean(s.ephemeral),
          config: strings(s.config),
          devices: devicesOf(s.devices),
          profiles: Array.isArray(s.profiles) ? (s.profiles as unknown[]).map(String) : profiles,
        });
        this.svc.snapshots.repo.setState(this.svc.snapshots.repo.get(row.id, snapName)!.id, "created");
      }
      const vol = obj(backup.volume);
      const volSnaps = Array.isArray(backup.volume_snapshots) ? (backup.volume_snapshots as unknown[]).map(obj) : [];
      const dir = await storage.adoptVolume(
        pool,
        project,
        "container",
        name,
        { description: String(vol.description ?? ""), config: strings(vol.config) },
        snaps.map((s) => {
          const snapName = String(s.name ?? "").split("/").pop()!;
          const v = volSnaps.find((x) => String(x.name ?? "").split("/").pop() === snapName) ?? {};
          return { name: snapName, description: String(v.description ?? ""), config: strings(v.config) };
        }),
      );
      this.svc.runtime.driver.create({ project, name }, dir);
    } catch (e) {
      this.svc.repo.delete(project, name);
      throw e;
    }
    await this.adoptRunning(row);
    this.svc.deps.events.lifecycle("instance-created", instanceUrl(project, name), { project });
  }
}
