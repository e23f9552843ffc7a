// Instance migration between servers (LXD 5.0.2's migrate_instance.go): the source answers
// POST /1.0/instances/{name} {migration: true} with a websocket operation (secrets `control`
// and `fs`), or connects out to a target's operation (push); the target (POST /1.0/instances,
// source.type=migration) connects to the source (pull) or waits for it (push). The channel,
// negotiation and transfer are channel.ts's: the source offers a MigrationHeader (BTRFS from a
// btrfs pool, else RSYNC), the target answers, the index header crosses the fs channel, then
// each snapshot (oldest first) and the instance, and the target ends with MigrationControl.
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import { join } from "node:path";
import { InternalError } from "../shared/errors.js";
import { onPath } from "../os/exec.js";
import type { StoragePort } from "../ports.js";
import type { OperationManager } from "../operations/manager.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { idmapJson, parseIdmapJson, type IdmapEntry } from "../instances/idmap.js";
import { InstanceService, instanceUrl, type Devices } from "../instances/service.js";
import type { LiveFinish } from "../instances/model.js";
import { validateSnapshotName, goTime, ZERO_TIME } from "../instances/snapshots.js";
import type { OperationView } from "../operations/types.js";
import { decodeHeader, encodeHeader, FS_RSYNC, INDEX_HEADER_VERSION, type MigrationHeader, type SnapshotMsg } from "./proto.js";
import { checkBwlimit } from "../storage/rsync.js";
import { rsyncRecv, rsyncSend } from "./rsync-stream.js";
import type { MigrationChannel } from "./ws-io.js";
import { stateDir } from "../instances/runtime.js";
import { nodelxdExtension, poolTransports, recvData, recvIndexHeader, sendData, sendFailure, sendIndexHeader, sendSuccess, sourceFailure, sourceHandshake, sourceOperation, targetAnswer, targetResult, type Channels, type PushTarget, type SinkRequest } from "./channel.js";
import { insideWriteLock, outsideWriteLock } from "../shared/write-lock.js";

export type { SinkRequest } from "./channel.js";

/** LXD's architecture ids (shared/osarch). */
const ARCHES: Record<string, number> = { i686: 1, x86_64: 2, armv7l: 3, aarch64: 4, ppc: 5, ppc64: 6, ppc64le: 7, s390x: 8, mips: 9, mips64: 10, riscv32: 11, riscv64: 12 };
export const archId = (name: string) => ARCHES[name] ?? 0;
export const archName = (id: number) => Object.entries(ARCHES).find(([, v]) => v === id)?.[0] ?? "";

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

/** A live migration's target, once the instance exists: start it from the received dump and answer the source (or report `error`). */
export type LiveRestore = LiveFinish;

export interface SourceRequest {
  live: boolean;
  instanceOnly: boolean;
  /** Snapshot migration (POST /1.0/instances/{name}/snapshots/{snap}): the snapshot is sent as an instance without snapshots. */
  snapshot?: string;
  /** Push mode: the target's operation to connect to. */
  target?: PushTarget;
}

export interface InstanceMigrationDeps {
  operations: OperationManager;
  storage: StoragePort;
  /** The daemon's directory ($LXD_DIR): rsync's jail lives under it. */
  lxdDir: string;
}

export class InstanceMigration {
  constructor(
    private readonly deps: InstanceMigrationDeps,
    private readonly svc: InstanceService,
  ) {}

  /** Where the receiving rsync's jail is made. */
  private get jail(): string {
    return join(this.deps.lxdDir, "migration-jail");
  }

  private storage() {
    const s = this.deps.storage;
    return s as Required<typeof s>;
  }

  // ---- source ----

  /** POST /1.0/instances/{name} {migration: true}: the source's operation. */
  startSource(project: string, name: string, req: SourceRequest): OperationView {
    const row = this.svc.require(project, name);
    if (req.snapshot) this.svc.snapshots.require(row, req.snapshot);
    const live = !req.snapshot && req.live && this.svc.runtime.isRunning(row);
    if (live && !onPath("criu")) throw new InternalError("Unable to perform container live migration. CRIU isn't installed on the source server");
    const resources = { instances: [instanceUrl(project, name)], containers: [instanceUrl(project, name).replace("/1.0/instances/", "/1.0/containers/")] };
    return sourceOperation(this.deps.operations, { description: "Migrating instance", project, resources, target: req.target, live }, (ch, ctx) => this.runSource(project, name, { ...req, live }, ch, (m) => ctx.updateMetadata(m), ctx.signal));
  }

  private async runSource(project: string, name: string, req: SourceRequest, ch: Channels, progress: (m: Record<string, unknown>) => void, signal: AbortSignal): Promise<void> {
    try {
      const row = this.svc.require(project, name);
      const pool = InstanceService.rootDisk(this.svc.expanded(row).devices).pool;
      const snapshot = req.snapshot ? this.svc.snapshots.require(row, req.snapshot) : undefined;
      const snaps = req.instanceOnly || snapshot ? [] : this.svc.snapshots.list(row);
      const onDisk = parseIdmapJson((snapshot?.config ?? row.config)["volatile.last_state.idmap"]);
      const storage = this.storage();
      const poolConfig = (storage.getPool?.(pool) as { config?: Record<string, string> } | undefined)?.config;
      // A snapshot sent as an instance goes by rsync (its tree is the new volume).
      const ours = poolTransports(snapshot ? undefined : storage.instanceStreamType?.(pool), poolConfig);
      const offer: MigrationHeader = {
        fs: FS_RSYNC,
        idmap: idmapToMsg(onDisk),
        snapshotNames: snaps.map((s) => s.name),
        snapshots: snaps.map((s) => this.snapshotMsg(s)),
        indexHeaderVersion: INDEX_HEADER_VERSION,
        // Live: the dump follows by rsync on the criu websocket (no CRIU pre-dumps offered).
        ...(req.live ? { criu: CRIU_RSYNC, predump: false } : {}),
      };
      const { resp, transport, rsync } = await sourceHandshake(ch, offer, ours);
      if (req.live) {
        if (resp.criu === undefined) throw new Error("Got no CRIU socket type for live migration");
        if (resp.criu !== CRIU_RSYNC) throw new Error("Formats other than criu rsync not understood");
        if (!ch.criu) throw new Error("Missing criu websocket for live migration");
      }
      let sendSnaps = snaps;
      if (resp.refresh) sendSnaps = snaps.filter((s) => resp.snapshotNames.includes(s.name));
      const bwlimit = poolConfig?.["rsync.bwlimit"] ? checkBwlimit(poolConfig["rsync.bwlimit"]) : undefined;
      if ((resp.indexHeaderVersion ?? 0) > 0) await sendIndexHeader(ch, this.backupConfig(row, sendSnaps, pool, snapshot?.name));
      const send = () =>
        sendData(ch, transport, rsync, {
          snapshots: sendSnaps.map((s) => s.name),
          path: (s) => (s !== undefined ? storage.mountInstanceSnapshot(project, pool, name, s) : snapshot ? storage.mountInstanceSnapshot(project, pool, name, snapshot.name) : storage.mountInstanceVolume(project, pool, name)),
          streams: storage.sendInstanceStreams ? (names, out) => storage.sendInstanceStreams!(project, pool, name, names, out, { signal }) : undefined,
          label: name,
          bwlimit,
        }, { signal, progress });
      // A running container (stateless copy) is frozen while rsync reads its volume, as LXD does
      // on dir; btrfs sends a read-only snapshot of it instead.
      if (req.live) {
        // LXD's MultiSync: the volume while it runs, the dump, then (rsync) the volume once more.
        await send();
        await this.sendDump(project, name, pool, ch, { rsync, bwlimit, signal, finalSync: transport.fs === FS_RSYNC });
        return;
      }
      if (snapshot || transport.fs !== FS_RSYNC) await send();
      else await this.svc.runtime.frozenDuring(this.svc.require(project, name), send);
      await targetResult(ch.control);
    } catch (e) {
      await sendFailure(ch.control, e);
      throw e;
    }
  }

  /**
   * A live migration's last steps on the source (LXD's CRIU_RSYNC): the final dump, which stops
   * the container only once the target has restored it; meanwhile the dump directory goes to the
   * target on the criu websocket, then the volume's final rsync pass, then the target's answer.
   * If anything fails before the target's success, CRIU leaves the container running.
   */
  private async sendDump(project: string, name: string, pool: string, ch: Channels, opts: { rsync: string[]; bwlimit?: string; signal: AbortSignal; finalSync: boolean }): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), "nodelxd_checkpoint_"));
    let afterDump: Error | undefined;
    try {
      await this.svc.runtime.migrationDump(project, name, join(dir, "final"), async () => {
        try {
          await rsyncSend(name, dir, ch.criu!, { features: opts.rsync, bwlimit: opts.bwlimit, signal: opts.signal });
          if (opts.finalSync) await rsyncSend(name, await this.storage().mountInstanceVolume(project, pool, name), ch.fs, { features: opts.rsync, bwlimit: opts.bwlimit, signal: opts.signal });
          await targetResult(ch.control);
          return true;
        } catch (e) {
          afterDump = e as Error;
          return false;
        }
      });
    } catch (e) {
      throw afterDump ?? e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
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
    const storage = this.deps.storage;
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

  /** Before a target's operation: a live migration (the client says so, or a pull's source has a criu websocket) needs CRIU here. */
  checkSink(sink: SinkRequest): void {
    if ((sink.live || (sink.mode === "pull" && sink.secrets?.criu)) && !onPath("criu")) throw new InternalError("Unable to perform container live migration. CRIU isn't installed on the destination server");
  }

  /**
   * The target's transfer into an instance's volume: negotiate, receive the index header, then
   * each snapshot (synced into the volume and snapshotted there) and the instance. For a new
   * instance the volume is empty; on `refresh` it is the existing instance's, whose snapshots
   * that differ from the source's (name or creation second) are deleted first and only the
   * missing ones are asked for, as LXD's CompareSnapshots. Throws with the source's or our
   * error; the caller removes a new instance (a refreshed one is left as it is).
   *
   * A live migration (the source offers CRIU_RSYNC) also receives the source's CRIU dump on the
   * criu websocket into the volume's state directory, and the source's final rsync pass; it
   * resolves to the step that starts the new instance from that dump and only then tells the
   * source it succeeded (the source's container stops there only then). The caller runs it
   * once the instance is created, or calls it with the error that stopped the create.
   */
  async receive(project: string, name: string, pool: string, req: SinkRequest, ch: Channels, signal: AbortSignal, progress: (m: Record<string, unknown>) => void): Promise<LiveRestore | undefined> {
    try {
      const offer = decodeHeader(await ch.control.recvMessage());
      const live = offer.criu === CRIU_RSYNC;
      if (live) {
        if (!onPath("criu")) throw new Error("Unable to perform container live migration. CRIU isn't installed on the destination server");
        if (!ch.criu) throw new Error("Missing criu secret for live migration");
        if (req.refresh) throw new Error("Cannot refresh an instance by live migration");
      }
      if (!req.instanceOnly && offer.snapshotNames.length !== offer.snapshots.length) throw new Error("Migration header lists snapshot names without their configuration");
      let snapshots = req.instanceOnly ? [] : offer.snapshots;
      for (const s of snapshots) validateSnapshotName(String(s.name ?? ""));
      if (req.refresh && !req.instanceOnly) snapshots = await this.refreshPlan(project, name, snapshots);
      const storage = this.storage();
      const poolConfig = (storage.getPool?.(pool) as { config?: Record<string, string> } | undefined)?.config;
      // Optimized only into a new instance (an existing one is refreshed by rsync).
      const { transport, fields, rsync, negotiate } = targetAnswer(offer, poolTransports(storage.instanceStreamType?.(pool), poolConfig), req.refresh, await nodelxdExtension());
      const resp: MigrationHeader = {
        ...fields,
        indexHeaderVersion: Math.min(offer.indexHeaderVersion ?? 0, INDEX_HEADER_VERSION),
        snapshotNames: snapshots.map((s) => s.name),
        snapshots,
        idmap: [],
        refresh: req.refresh,
      };
      // A running source copied statelessly (CRIU type NONE): echoed back; with rsync the source
      // then sends the volume a second time, frozen (LXD's MultiSync).
      const finalSync = (live || offer.criu === CRIU_NONE) && transport.fs === FS_RSYNC;
      if (offer.criu === CRIU_NONE) resp.criu = CRIU_NONE;
      if (live) Object.assign(resp, { criu: CRIU_RSYNC, predump: false });
      await ch.control.send(encodeHeader(resp));
      // From here on the source only speaks on the control channel to report a failure.
      const failed = sourceFailure(ch.control);
      const idmap = idmapFromMsg(offer);
      const byName = new Map(snapshots.map((s) => [s.name, s]));
      const work = async () => {
        const volumes = (resp.indexHeaderVersion ?? 0) > 0 ? indexVolumes(await recvIndexHeader(ch, req.refresh)) : {};
        // The transfer is the long part: it runs outside the cluster write lock, each received
        // snapshot's rows written holding it again.
        await outsideWriteLock(() => recvData(ch, transport, rsync, {
          snapshots: snapshots.map((s) => s.name),
          dir: () => storage.mountInstanceVolume(project, pool, name),
          streams: storage.receiveInstanceStreams ? (names, next) => storage.receiveInstanceStreams!(project, pool, name, names, next, { signal }) : undefined,
          addSnapshot: (snapName, place) => insideWriteLock(async () => {
            const s = byName.get(snapName)!;
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
            }, signal, place);
            const vol = volumes.snapshots?.[s.name];
            if (vol) storage.setInstanceVolumeConfig?.(project, pool, name, s.name, vol);
          }),
          passes: finalSync ? 2 : 1,
          lastSnapshotSec: (() => {
            const last = snapshots.at(-1)?.creation_date;
            return last !== undefined && last > 0 ? Number(last) : undefined;
          })(),
          label: name,
          jail: this.jail,
        }, { signal, progress, negotiate }));
        if (volumes.main && !req.refresh) storage.setInstanceVolumeConfig?.(project, pool, name, undefined, volumes.main);
        // The files carry the source's host ids: the first start shifts them to our map.
        this.svc.repo.patchConfig(project, name, { "volatile.last_state.idmap": idmapJson(idmap) });
      };
      const dump = live ? this.receiveDump(ch.criu!, { rsync, negotiate, signal }) : undefined;
      let incoming: string | undefined;
      try {
        [, incoming] = await Promise.race([Promise.all([work(), dump]), failed]);
      } catch (e) {
        // A dump that still arrives after the failure is not kept.
        void dump?.then((d) => rmSync(d, { recursive: true, force: true }), () => {});
        throw await sourceReason(failed, e);
      }
      if (incoming) await this.placeDump(project, name, pool, incoming);
      if (!live) {
        await sendSuccess(ch.control);
        return undefined;
      }
      return async (error, started) => {
        try {
          if (error) throw error;
          await Promise.race([this.svc.runtime.startMigrated(project, name), failed]);
          started?.();
        } catch (e) {
          await sendFailure(ch.control, e);
          throw transferError(e);
        }
        await sendSuccess(ch.control);
      };
    } catch (e) {
      await sendFailure(ch.control, e);
      throw transferError(e);
    }
  }

  /**
   * The source's CRIU dump (its checkpoint directory, the dump in `final/`), received by the
   * jailed rsync into a fresh directory of ours (not the volume: the source's final pass would
   * delete it there). Returns that directory.
   */
  private async receiveDump(criu: MigrationChannel, opts: { rsync: string[]; negotiate: boolean; signal: AbortSignal }): Promise<string> {
    const base = join(this.deps.lxdDir, "migration-state");
    mkdirSync(base, { recursive: true, mode: 0o700 });
    const incoming = mkdtempSync(join(base, "dump-"));
    mkdirSync(this.jail, { recursive: true, mode: 0o700 });
    try {
      await rsyncRecv(incoming, this.jail, criu, { features: opts.rsync, negotiate: opts.negotiate, signal: opts.signal });
    } catch (e) {
      rmSync(incoming, { recursive: true, force: true });
      throw e;
    }
    return incoming;
  }

  /**
   * The received dump becomes the new volume's state directory, checked first: a directory of
   * regular files only, as CRIU writes them (nothing that could point CRIU's restore or the id
   * shift at anything else). The instance is then stateful: it starts from that state.
   */
  private async placeDump(project: string, name: string, pool: string, incoming: string): Promise<void> {
    try {
      const final = join(incoming, "final");
      if (!lstatSync(final, { throwIfNoEntry: false })?.isDirectory()) throw new Error("The source's CRIU dump has no final directory");
      for (const e of readdirSync(final, { withFileTypes: true })) if (!e.isFile()) throw new Error(`Unexpected entry in the source's CRIU dump: ${JSON.stringify(e.name)}`);
      const state = stateDir(await this.storage().mountInstanceVolume(project, pool, name));
      rmSync(state, { recursive: true, force: true });
      try {
        renameSync(final, state);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
        cpSync(final, state, { recursive: true, preserveTimestamps: true });
      }
      this.svc.repo.setStateful(project, name, true);
    } finally {
      rmSync(incoming, { recursive: true, force: true });
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

/**
 * A transfer that broke: when the source failed, its report on the control channel says why
 * (a relaying client may close the other websockets first); waited for briefly, else `err`.
 */
async function sourceReason(failed: Promise<never>, err: unknown): Promise<unknown> {
  const ac = new AbortController();
  const reported = await Promise.race([failed.then(() => undefined, (f: unknown) => f), delay(1000, undefined, { signal: ac.signal }).catch(() => undefined)]);
  ac.abort();
  return reported === undefined || reported === err ? err : (reported as Error).message.startsWith("Got error reading migration source") ? err : reported;
}

/** The target's failure as LXD's instance create words it (the source is told the bare error). */
const transferError = (e: unknown) => new Error(`Error transferring instance data: ${(e as Error).message}`);

/** LXD's CRIUType: the dump by rsync on the criu websocket (live), or none (a running source copied statelessly). */
const CRIU_RSYNC = 0;
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
