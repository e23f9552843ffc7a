// backup.yaml in each instance volume (LXD's UpdateBackupFile): the instance, its snapshots,
// pool, profiles and volumes as the database has them, so `lxd recover` can recreate the records
// from the pool alone. Rewritten after every lifecycle change of the instance, its snapshots or
// its volume (the event hub tells us which), written to a temporary file and renamed over.
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import type { EventHub } from "../operations/events.js";
import { stringifyYaml } from "../shared/yaml.js";
import type { LxdEvent } from "../operations/types.js";
import type { InstanceService } from "./service.js";

/** Lifecycle actions after which the instance's backup.yaml is rewritten. */
const INSTANCE_ACTIONS = /^instance-(created|updated|renamed|restored|started|stopped|shutdown|snapshot-(created|deleted|renamed|updated))$/;
const VOLUME_ACTIONS = /^storage-volume-(updated|snapshot-updated)$/;

export class BackupFile {
  private readonly pending = new Map<string, Promise<void>>();

  constructor(
    private readonly svc: InstanceService,
    private readonly log: Logger,
  ) {}

  /** Follow the hub's lifecycle events; returns the unsubscribe function. */
  follow(events: EventHub): () => void {
    return events.subscribe({
      filter: { types: new Set(["lifecycle"]) },
      send: (event: LxdEvent) => {
        const target = BackupFile.instanceOf(event);
        if (target) this.schedule(target.project, target.name);
      },
    });
  }

  /** The instance a lifecycle event is about, when its backup.yaml depends on it. */
  static instanceOf(event: LxdEvent): { project: string; name: string } | undefined {
    const meta = event.metadata as { action?: string; source?: string };
    const source = meta.source ?? "";
    const path = decodeURIComponent(source.split("?")[0]);
    let m: RegExpExecArray | null;
    if (INSTANCE_ACTIONS.test(meta.action ?? "") && (m = /^\/1\.0\/instances\/([^/]+)/.exec(path))) return { project: event.project ?? "default", name: m[1] };
    if (VOLUME_ACTIONS.test(meta.action ?? "") && (m = /^\/1\.0\/storage-pools\/[^/]+\/volumes\/container\/([^/]+)/.exec(path))) return { project: event.project ?? "default", name: m[1] };
    return undefined;
  }

  /** Writes for one instance run one after another (the last one wins). */
  private schedule(project: string, name: string): void {
    const key = `${project}/${name}`;
    const next = (this.pending.get(key) ?? Promise.resolve()).then(() => this.write(project, name)).catch((e) => this.log.warn({ err: e, instance: name, project }, "cannot write backup.yaml"));
    this.pending.set(key, next);
    void next.finally(() => {
      if (this.pending.get(key) === next) this.pending.delete(key);
    });
  }

  async write(project: string, name: string): Promise<void> {
    const row = this.svc.repo.get(project, name);
    // Events of instances on other cluster members reach every member: theirs write their own.
    if (!row || !this.svc.backups || !this.svc.deps.ports.cluster.owns(row.node)) return;
    const dir = await this.svc.volumeDir(row);
    const text = stringifyYaml(this.svc.backups.backupConfig(row), { aliasDuplicateObjects: false });
    const tmp = join(dir, ".backup.yaml.tmp");
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, join(dir, "backup.yaml"));
  }

  /** Wait for the writes scheduled so far (tests, recover). */
  async settled(): Promise<void> {
    await Promise.all([...this.pending.values()]);
  }
}
