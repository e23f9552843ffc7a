// Instance migration between servers (LXD 5.0.2's migrate_instance.go), rsync transport:
// the source answers POST /1.0/instances/{name} {migration: true} with a websocket operation
// (secrets `control` and `fs`), or connects out to a target's operation (push); the target
// (POST /1.0/instances, source.type=migration) connects to the source (pull) or waits for it
// (push). Either way the source offers a MigrationHeader, the target answers with the types
// it accepts, the index header (JSON) crosses the fs channel, then one rsync stream per
// snapshot (oldest first) and one for the instance, and the target ends with MigrationControl.
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, statSync } from "node:fs";
import type { WebSocket } from "ws";
import { BadRequest, InternalError } from "../shared/errors.js";
import type { Core } from "../daemon/feature.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { idmapJson, parseIdmapJson, type IdmapEntry } from "../instances/idmap.js";
import { InstanceService, instanceUrl, type Devices } from "../instances/service.js";
import { validateSnapshotName, goTime, ZERO_TIME } from "../instances/snapshots.js";
import type { OperationView } from "../operations/types.js";
import { decodeControl, decodeHeader, encodeControl, encodeHeader, FS_RSYNC, INDEX_HEADER_VERSION, rsyncFeaturesMsg, rsyncFeaturesOf, type MigrationHeader, type SnapshotMsg } from "./proto.js";
import { checkBwlimit } from "../storage/rsync.js";
import { rsyncRecv, rsyncSend, invalidateQuickCheck } from "./rsync-stream.js";
import { connectPeer, MigrationChannel } from "./ws-io.js";

/** The rsync features we speak (all of LXD's). */
export const OUR_RSYNC_FEATURES = ["xattrs", "delete", "compress", "bidirectional"];
const CONNECT_TIMEOUT_MS = 10_000;
const INDEX_HEADER_LIMIT = 16 << 20;

/** LXD's architecture ids (shared/osarch). */
const ARCHES: Record<string, number> = { i686: 1, x86_64: 2, armv7l: 3, aarch64: 4, ppc: 5, ppc64: 6, ppc64le: 7, s390x: 8, mips: 9, mips64: 10, riscv32: 11, riscv64: 12 };
export const archId = (name: string) => ARCHES[name] ?? 0;
export const archName = (id: number) => Object.entries(ARCHES).find(([, v]) => v === id)?.[0] ?? "";

const secret = () => randomBytes(32).toString("hex");

/** Websockets an operation waits for: resolves when every named one has connected. */
export class Sockets {
  readonly secrets: Record<string, string>;
  private readonly got = new Map<string, MigrationChannel>();
  private done!: () => void;
  readonly all = new Promise<void>((r) => (this.done = r));

  constructor(names: string[]) {
    this.secrets = Object.fromEntries(names.map((n) => [n, secret()]));
  }

  connect(sec: string, ws: WebSocket): void {
    const name = Object.entries(this.secrets).find(([, s]) => s === sec)?.[0];
    if (!name || this.got.has(name)) throw new Error("Invalid secret");
    this.got.set(name, new MigrationChannel(ws, name));
    if (this.got.size === Object.keys(this.secrets).length) this.done();
  }

  async wait(signal: AbortSignal): Promise<{ control: MigrationChannel; fs: MigrationChannel }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error("Timed out waiting for migration connections")), CONNECT_TIMEOUT_MS)));
    const aborted = new Promise<never>((_, rej) => signal.addEventListener("abort", () => rej(new Error("Operation cancelled")), { once: true }));
    try {
      await Promise.race([this.all, timeout, aborted]);
    } finally {
      clearTimeout(timer);
    }
    return { control: this.got.get("control")!, fs: this.got.get("fs")! };
  }

  closeAll(): void {
    for (const c of this.got.values()) c.close();
  }
}

export function closeChannels(ch: { control?: MigrationChannel; fs?: MigrationChannel }): void {
  ch.control?.close();
  ch.fs?.terminate();
}

export async function sendFailure(control: MigrationChannel | undefined, err: unknown): Promise<void> {
  if (!control) return;
  await control.send(encodeControl({ success: false, message: (err as Error).message })).catch(() => {});
}

export const toConfigList = (m: Record<string, string>) => Object.entries(m).map(([key, value]) => ({ key, value }));
export const fromConfigList = (l: { key: string; value: string }[] | undefined) => Object.fromEntries((l ?? []).map((c) => [String(c.key), String(c.value)]));

/** Idmap entries as the header carries them, and back (LXD's IdmapEntry JSON form). */
function idmapToMsg(map: IdmapEntry[]) {
  return map.map((e) => ({ isuid: e.Isuid, isgid: e.Isgid, hostid: e.Hostid, nsid: e.Nsid, maprange: e.Maprange }));
}
function idmapFromMsg(h: MigrationHeader): IdmapEntry[] {
  return h.idmap.map((e) => {
    for (const v of [e.hostid, e.nsid, e.maprange]) if (!Number.isInteger(v) || v < 0) throw new Error("Invalid idmap entry in migration header");
    return { Isuid: !!e.isuid, Isgid: !!e.isgid, Hostid: e.hostid, Nsid: e.nsid, Maprange: e.maprange };
  });
}

export interface SourceRequest {
  live: boolean;
  instanceOnly: boolean;
  /** Snapshot migration (POST /1.0/instances/{name}/snapshots/{snap}): the snapshot is sent as an instance without snapshots. */
  snapshot?: string;
  /** Push mode: the target's operation to connect to. */
  target?: { operation: string; certificate: string; websockets: Record<string, string> };
}

export interface SinkRequest {
  mode: "pull" | "push";
  operation?: string;
  certificate?: string;
  secrets?: Record<string, string>;
  refresh: boolean;
  instanceOnly: boolean;
  live: boolean;
}

export class InstanceMigration {
  constructor(
    private readonly core: Core,
    private readonly svc: InstanceService,
  ) {}

  private storage() {
    const s = this.core.ports.storage;
    if (!s?.mountInstanceSnapshot) throw new Error("Storage is not available");
    return s as Required<typeof s>;
  }

  // ---- source ----

  /** POST /1.0/instances/{name} {migration: true}: the source's operation. */
  startSource(project: string, name: string, req: SourceRequest): OperationView {
    const row = this.svc.require(project, name);
    if (req.snapshot) this.svc.snapshots.require(row, req.snapshot);
    else if (req.live && this.svc.runtime.isRunning(row)) throw new InternalError("Unable to perform container live migration. CRIU isn't installed on the source server");
    const resources = { instances: [instanceUrl(project, name)], containers: [instanceUrl(project, name).replace("/1.0/instances/", "/1.0/containers/")] };
    if (req.target) {
      const target = req.target;
      return this.core.operations.create({
        class: "task",
        description: "Migrating instance",
        project,
        resources,
        run: async (ctx) => {
          const ch: { control?: MigrationChannel; fs?: MigrationChannel } = {};
          try {
            for (const [n, s] of Object.entries(target.websockets)) {
              if (n !== "control" && n !== "fs") throw new Error(`Unknown secret provided: ${n}`);
              ch[n] = await connectPeer(target.operation, s, target.certificate, n, ctx.signal);
            }
            if (!ch.control || !ch.fs) throw new Error("Missing control or fs secret");
            await this.runSource(project, name, req, { control: ch.control, fs: ch.fs }, (m) => ctx.updateMetadata(m), ctx.signal);
          } finally {
            closeChannels(ch);
          }
        },
      });
    }
    const sockets = new Sockets(["control", "fs"]);
    return this.core.operations.create({
      class: "websocket",
      description: "Migrating instance",
      project,
      resources,
      metadata: { ...sockets.secrets },
      secrets: sockets.secrets,
      connect: (s, ws) => sockets.connect(s, ws as WebSocket),
      run: async (ctx) => {
        try {
          const ch = await sockets.wait(ctx.signal);
          await this.runSource(project, name, req, ch, (m) => ctx.updateMetadata(m), ctx.signal);
        } finally {
          sockets.closeAll();
        }
      },
    });
  }

  private async runSource(project: string, name: string, req: SourceRequest, ch: { control: MigrationChannel; fs: MigrationChannel }, progress: (m: Record<string, unknown>) => void, signal: AbortSignal): Promise<void> {
    try {
      const row = this.svc.require(project, name);
      const pool = InstanceService.rootDisk(this.svc.expanded(row).devices).pool;
      const snapshot = req.snapshot ? this.svc.snapshots.require(row, req.snapshot) : undefined;
      const snaps = req.instanceOnly || snapshot ? [] : this.svc.snapshots.list(row);
      const onDisk = parseIdmapJson((snapshot?.config ?? row.config)["volatile.last_state.idmap"]);
      const offer: MigrationHeader = {
        fs: FS_RSYNC,
        idmap: idmapToMsg(onDisk),
        snapshotNames: snaps.map((s) => s.name),
        snapshots: snaps.map((s) => this.snapshotMsg(s)),
        rsyncFeatures: rsyncFeaturesMsg(OUR_RSYNC_FEATURES),
        indexHeaderVersion: INDEX_HEADER_VERSION,
      };
      await ch.control.send(encodeHeader(offer));
      const resp = decodeHeader(await ch.control.recvMessage());
      if (resp.fs !== FS_RSYNC) throw new Error(`Failed to negotiate migration type: No matching migration types found. Offered types: [${resp.fs} RSYNC], our types: [RSYNC]`);
      let features = rsyncFeaturesOf(resp);
      if (!features.includes("bidirectional")) features = ["xattrs", "delete", "compress"];
      let sendSnaps = snaps;
      if (resp.refresh) sendSnaps = snaps.filter((s) => resp.snapshotNames.includes(s.name));
      const poolConfig = (this.core.ports.storage?.getPool?.(pool) as { config?: Record<string, string> } | undefined)?.config;
      const bwlimit = poolConfig?.["rsync.bwlimit"] ? checkBwlimit(poolConfig["rsync.bwlimit"]) : undefined;
      if ((resp.indexHeaderVersion ?? 0) > 0) {
        await ch.fs.send(Buffer.from(JSON.stringify({ config: this.backupConfig(row, sendSnaps, pool, snapshot?.name) })));
        await ch.fs.endStream();
        const answer = JSON.parse((await ch.fs.readAll(1 << 20)).toString("utf8") || "{}") as { StatusCode?: number; Error?: string };
        if (answer.StatusCode !== 200) throw new Error(`Failed negotiating migration options: ${answer.Error ?? "no answer"}`);
      }
      const storage = this.storage();
      const send = async () => {
        for (const s of sendSnaps) {
          const path = await storage.mountInstanceSnapshot(project, pool, name, s.name);
          await rsyncSend(name, path, ch.fs, { features, bwlimit, signal, progress: (n) => progress({ fs_progress: `${s.name}: ${n} bytes` }) });
        }
        const path = snapshot ? await storage.mountInstanceSnapshot(project, pool, name, snapshot.name) : await storage.mountInstanceVolume(project, pool, name);
        await rsyncSend(name, path, ch.fs, { features, bwlimit, signal, progress: (n) => progress({ fs_progress: `${name}: ${n} bytes` }) });
      };
      // A running container (stateless copy) is frozen while its volume is read, as LXD does on dir.
      if (snapshot) await send();
      else await this.svc.runtime.frozenDuring(this.svc.require(project, name), send);
      const msg = decodeControl(await ch.control.recvMessage());
      if (!msg.success) throw new Error(msg.message || "Migration failed on target");
    } catch (e) {
      await sendFailure(ch.control, e);
      throw e;
    }
  }

  private snapshotMsg(s: { name: string; config: Record<string, string>; profiles: string[]; ephemeral: boolean; devices: Devices; architecture: string; stateful: boolean; createdAt: string; expiresAt: string }): SnapshotMsg {
    const secs = (t: string) => (t && !t.startsWith("0001-01-01") ? Math.floor(new Date(t).getTime() / 1000) : -62135596800);
    return {
      name: s.name,
      localConfig: toConfigList(s.config),
      profiles: s.profiles,
      ephemeral: s.ephemeral,
      localDevices: Object.entries(s.devices).map(([name, cfg]) => ({ name, config: toConfigList(cfg) })),
      architecture: archId(s.architecture),
      stateful: s.stateful,
      creation_date: secs(s.createdAt),
      last_used_date: -62135596800,
      expiry_date: secs(s.expiresAt),
    };
  }

  /** The index header's config: backup.yaml's shape (instance, snapshots, pool, volume). */
  private backupConfig(row: InstanceRow, snaps: ReturnType<InstanceService["snapshots"]["list"]>, pool: string, snapshot?: string) {
    const storage = this.core.ports.storage;
    const p = storage?.getPool?.(pool);
    const vol = (snap?: string) => storage?.instanceVolumeConfig?.(row.project, pool, row.name, snap) ?? { description: "", config: {} };
    const main = vol(snapshot);
    // Go's encoding/json field names: backup.Config has yaml tags only (VolumeSnapshots, not volume_snapshots).
    return {
      Container: this.svc.view(row),
      Snapshots: snaps.map((s) => this.svc.snapshots.view(row, s)),
      Pool: p ?? null,
      Volume: { config: main.config, description: main.description, name: row.name, type: "container", used_by: [], location: "none", content_type: "filesystem", project: row.project, created_at: ZERO_TIME },
      VolumeSnapshots: snaps.map((s) => {
        const v = vol(s.name);
        return { description: v.description, expires_at: s.expiresAt, name: s.name, config: v.config, content_type: "filesystem", created_at: s.createdAt };
      }),
    };
  }

  // ---- target ----

  /** Channels for the target: connect to the source (pull), or the sockets the source will connect (push). */
  sinkSockets(req: SinkRequest): Sockets | undefined {
    if (req.mode === "push") return new Sockets(["control", "fs"]);
    if (!req.operation) throw new BadRequest("Missing migration source operation");
    if (!req.secrets?.control) throw new InternalError("Missing control secret");
    if (!req.secrets?.fs) throw new InternalError("Missing fs secret");
    return undefined;
  }

  async channels(req: SinkRequest, sockets: Sockets | undefined, signal: AbortSignal): Promise<{ control: MigrationChannel; fs: MigrationChannel }> {
    if (sockets) return sockets.wait(signal);
    const control = await connectPeer(req.operation!, req.secrets!.control, req.certificate ?? "", "control", signal);
    try {
      const fs = await connectPeer(req.operation!, req.secrets!.fs, req.certificate ?? "", "fs", signal);
      return { control, fs };
    } catch (e) {
      await sendFailure(control, e);
      control.close();
      throw e;
    }
  }

  /**
   * The target's transfer into an instance's volume: negotiate, receive the index header, then
   * each snapshot (synced into the volume and snapshotted there) and the instance. For a new
   * instance the volume is empty; on `refresh` it is the existing instance's, whose snapshots
   * that differ from the source's (name or creation second) are deleted first and only the
   * missing ones are asked for, as LXD's CompareSnapshots. Throws with the source's or our
   * error; the caller removes a new instance (a refreshed one is left as it is).
   */
  async receive(project: string, name: string, pool: string, req: SinkRequest, ch: { control: MigrationChannel; fs: MigrationChannel }, signal: AbortSignal, progress: (m: Record<string, unknown>) => void): Promise<void> {
    try {
      const offer = decodeHeader(await ch.control.recvMessage());
      const offered = offer.fs === FS_RSYNC ? rsyncFeaturesOf(offer) : [];
      const theirs = offered.includes("bidirectional") ? offered : ["xattrs", "delete", "compress"];
      const features = OUR_RSYNC_FEATURES.filter((f) => theirs.includes(f));
      if (!req.instanceOnly && offer.snapshotNames.length !== offer.snapshots.length) throw new Error("Migration header lists snapshot names without their configuration");
      let snapshots = req.instanceOnly ? [] : offer.snapshots;
      for (const s of snapshots) validateSnapshotName(String(s.name ?? ""));
      if (req.refresh && !req.instanceOnly) snapshots = await this.refreshPlan(project, name, snapshots);
      const resp: MigrationHeader = {
        fs: FS_RSYNC,
        rsyncFeatures: rsyncFeaturesMsg(features),
        indexHeaderVersion: Math.min(offer.indexHeaderVersion ?? 0, INDEX_HEADER_VERSION),
        snapshotNames: snapshots.map((s) => s.name),
        snapshots,
        idmap: [],
        refresh: req.refresh,
      };
      // A running source copied statelessly (CRIU type NONE): echoed back, the source then sends
      // the volume a second time, frozen (LXD's MultiSync).
      const finalSync = offer.criu === CRIU_NONE;
      if (finalSync) resp.criu = CRIU_NONE;
      await ch.control.send(encodeHeader(resp));
      // From here on the source only speaks on the control channel to report a failure.
      const failed = new Promise<never>((_, reject) => {
        void (async () => {
          try {
            const msg = decodeControl(await ch.control.recvMessage());
            if (!msg.success) reject(new Error(msg.message || "Migration failed on source"));
          } catch (e) {
            reject(new Error(`Got error reading migration source: ${(e as Error).message}`));
          }
        })();
      });
      failed.catch(() => {});
      const idmap = idmapFromMsg(offer);
      const work = async () => {
        let volumes: IndexVolumes = {};
        if ((resp.indexHeaderVersion ?? 0) > 0) {
          volumes = indexVolumes(JSON.parse((await ch.fs.readAll(INDEX_HEADER_LIMIT)).toString("utf8")));
          await ch.fs.send(Buffer.from(JSON.stringify({ StatusCode: 200, Error: "", Refresh: req.refresh })));
          await ch.fs.endStream();
        }
        const storage = this.storage();
        const dir = await storage.mountInstanceVolume(project, pool, name);
        const jail = this.core.paths.dir + "/migration-jail";
        mkdirSync(jail, { recursive: true, mode: 0o700 });
        // rsync gives the volume's root the peer's owner and mode (LXD keeps 0100 there): ours stay.
        const own = statSync(dir);
        const keepRoot = () => {
          chownSync(dir, own.uid, own.gid);
          chmodSync(dir, own.mode & 0o7777);
        };
        for (const s of snapshots) {
          await rsyncRecv(dir, jail, ch.fs, { features, signal, progress: (n) => progress({ fs_progress: `${s.name}: ${n} bytes` }) });
          keepRoot();
          await this.svc.snapshots.addReceived(project, name, pool, {
            name: s.name,
            config: fromConfigList(s.localConfig),
            devices: Object.fromEntries((s.localDevices ?? []).map((d) => [String(d.name), fromConfigList(d.config)])),
            profiles: (s.profiles ?? []).map(String),
            ephemeral: !!s.ephemeral,
            architecture: archName(s.architecture) || this.svc.require(project, name).architecture,
            createdAt: s.creation_date !== undefined && s.creation_date > 0 ? goTime(new Date(s.creation_date * 1000)) : goTime(new Date()),
            expiresAt: s.expiry_date !== undefined && s.expiry_date > 0 ? goTime(new Date(s.expiry_date * 1000)) : ZERO_TIME,
            lastIdmap: idmap,
          }, signal);
          const vol = volumes.snapshots?.[s.name];
          if (vol) storage.setInstanceVolumeConfig?.(project, pool, name, s.name, vol);
        }
        if (snapshots.length > 0) await invalidateQuickCheck(dir);
        for (let pass = finalSync ? 2 : 1; pass > 0; pass--) {
          await rsyncRecv(dir, jail, ch.fs, { features, signal, progress: (n) => progress({ fs_progress: `${name}: ${n} bytes` }) });
          keepRoot();
        }
        if (volumes.main && !req.refresh) storage.setInstanceVolumeConfig?.(project, pool, name, undefined, volumes.main);
        // The files carry the source's host ids: the first start shifts them to our map.
        this.svc.repo.patchConfig(project, name, { "volatile.last_state.idmap": idmapJson(idmap) });
      };
      await Promise.race([work(), failed]);
      await ch.control.send(encodeControl({ success: true, message: "" }));
    } catch (e) {
      await sendFailure(ch.control, e);
      throw e;
    }
  }

  /**
   * Refresh: delete the target's snapshots that the source does not have with the same name
   * and creation time (to the second, what the header carries), and return the source's
   * snapshots that must be sent (LXD's CompareSnapshots).
   */
  private async refreshPlan(project: string, name: string, offered: SnapshotMsg[]): Promise<SnapshotMsg[]> {
    const row = this.svc.require(project, name);
    const secs = (iso: string) => Math.floor(new Date(iso).getTime() / 1000);
    const ours = this.svc.snapshots.list(row);
    const theirs = new Map(offered.map((s) => [s.name, Number(s.creation_date ?? 0)]));
    const same = (s: { name: string; createdAt: string }) => theirs.has(s.name) && theirs.get(s.name) === secs(s.createdAt);
    // The caller holds the instance's queue (the refresh runs in it).
    for (const s of ours) if (!same(s)) await this.svc.snapshots.deleteLocked(project, name, s.name);
    const kept = new Set(ours.filter(same).map((s) => s.name));
    return offered.filter((s) => !kept.has(s.name));
  }
}

const CRIU_NONE = 2;

interface IndexVolumes {
  main?: { description: string; config: Record<string, string> };
  snapshots?: Record<string, { description: string; config: Record<string, string> }>;
}

/** A field of a Go-encoded struct: its Go name in any case (as encoding/json matches), or the yaml name. */
export function goField(obj: unknown, goName: string, yamlName: string): unknown {
  if (!obj || typeof obj !== "object") return undefined;
  const want = goName.toLowerCase();
  for (const [k, v] of Object.entries(obj)) if (k.toLowerCase() === want || k === yamlName) return v;
  return undefined;
}

/** The volume configs an index header carries (backup.Config's Volume and VolumeSnapshots), checked. */
function indexVolumes(header: unknown): IndexVolumes {
  const raw = goField(header, "config", "config");
  const cfg = { volume: goField(raw, "Volume", "volume"), volume_snapshots: goField(raw, "VolumeSnapshots", "volume_snapshots") };
  const one = (v: unknown) => {
    const o = v as { description?: unknown; config?: unknown } | null;
    if (!o || typeof o !== "object") return undefined;
    const config: Record<string, string> = {};
    const c = goField(o, "Config", "config");
    if (c && typeof c === "object") for (const [k, val] of Object.entries(c)) if (typeof val === "string") config[k] = val;
    const d = goField(o, "Description", "description");
    return { description: typeof d === "string" ? d : "", config };
  };
  const out: IndexVolumes = { main: one(cfg?.volume), snapshots: {} };
  if (Array.isArray(cfg?.volume_snapshots)) {
    for (const s of cfg.volume_snapshots as unknown[]) {
      const v = one(s);
      const name = goField(s, "Name", "name");
      if (v && typeof name === "string") out.snapshots![name] = v;
    }
  }
  return out;
}
