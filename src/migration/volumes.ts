// Custom volume migration between servers (LXD 5.0.2's migrate_storage_volumes.go), rsync
// transport: the source answers POST /1.0/storage-pools/{pool}/volumes/custom/{vol}
// {migration: true} with a websocket operation (secrets `control` and `fs`) or connects out to
// a target's operation (push); the target is POST .../volumes/custom with source.type
// migration. The source offers a MigrationHeader whose snapshots are the volume's (their
// config as localConfig), the index header carries backup.yaml's volume and volume_snapshots,
// then one rsync stream per snapshot (oldest first) and one for the volume; the target ends
// with MigrationControl. A refresh keeps the target's snapshots of the same names.
import type { WebSocket } from "ws";
import { BadRequest, InternalError } from "../shared/errors.js";
import type { Core } from "../daemon/feature.js";
import type { VolumeRow } from "../db/storage-repo.js";
import type { OperationView } from "../operations/types.js";
import { checkBwlimit } from "../storage/rsync.js";
import type { VolumeCopyRequest, VolumeCopyService } from "../storage/volume-copy.js";
import type { PoolService } from "../storage/pool-service.js";
import type { VolumeSnapshotService } from "../storage/volume-snapshots.js";
import { ZERO_TIME, goTime } from "../instances/snapshots.js";
import { closeChannels, fromConfigList, goField, OUR_RSYNC_FEATURES, sendFailure, Sockets, toConfigList, type SinkRequest } from "./instances.js";
import { decodeControl, decodeHeader, encodeControl, encodeHeader, FS_RSYNC, INDEX_HEADER_VERSION, rsyncFeaturesMsg, rsyncFeaturesOf, type MigrationHeader, type SnapshotMsg } from "./proto.js";
import { invalidateQuickCheck, rsyncRecv, rsyncSend } from "./rsync-stream.js";
import { connectPeer, type MigrationChannel } from "./ws-io.js";
import { chmodSync, chownSync, mkdirSync, statSync } from "node:fs";

const INDEX_HEADER_LIMIT = 16 << 20;
const GO_ZERO_SECS = -62135596800;

export interface VolumeSourceRequest {
  volumeOnly: boolean;
  target?: { operation: string; certificate: string; websockets: Record<string, string> };
}

export class VolumeMigration {
  constructor(
    private readonly core: Core,
    private readonly pools: PoolService,
    private readonly snapshots: VolumeSnapshotService,
    private readonly copies: VolumeCopyService,
  ) {}

  // ---- source ----

  startSource(pool: string, project: string, name: string, req: VolumeSourceRequest): OperationView {
    const row = this.copies.source(pool, project, name);
    const resources = { storage_volumes: [`/1.0/storage-pools/${pool}/volumes/custom/${name}`] };
    const run = (ch: { control: MigrationChannel; fs: MigrationChannel }, ctx: { signal: AbortSignal; updateMetadata(m: Record<string, unknown>): void }) => this.runSource(row, req, ch, (m) => ctx.updateMetadata(m), ctx.signal);
    if (req.target) {
      const target = req.target;
      return this.core.operations.create({
        class: "task",
        description: "Migrating storage volume",
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
            await run({ control: ch.control, fs: ch.fs }, ctx);
          } finally {
            closeChannels(ch);
          }
        },
      });
    }
    const sockets = new Sockets(["control", "fs"]);
    return this.core.operations.create({
      class: "websocket",
      description: "Migrating storage volume",
      project,
      resources,
      metadata: { ...sockets.secrets },
      secrets: sockets.secrets,
      connect: (s, ws) => sockets.connect(s, ws as WebSocket),
      run: async (ctx) => {
        try {
          await run(await sockets.wait(ctx.signal), ctx);
        } finally {
          sockets.closeAll();
        }
      },
    });
  }

  private async runSource(row: VolumeRow, req: VolumeSourceRequest, ch: { control: MigrationChannel; fs: MigrationChannel }, progress: (m: Record<string, unknown>) => void, signal: AbortSignal): Promise<void> {
    try {
      const snaps = req.volumeOnly ? [] : this.snapshots.list(row.pool, row.project, row.name);
      const snapName = (s: VolumeRow) => s.name.slice(row.name.length + 1);
      const poolConfig = this.pools.pool(row.pool).config;
      const ours = poolConfig["rsync.compression"] === "false" ? OUR_RSYNC_FEATURES.filter((f) => f !== "compress") : OUR_RSYNC_FEATURES;
      const offer: MigrationHeader = {
        fs: FS_RSYNC,
        idmap: [],
        snapshotNames: snaps.map(snapName),
        snapshots: snaps.map((s) => volumeSnapshotMsg(snapName(s), s.config)),
        rsyncFeatures: rsyncFeaturesMsg(ours),
        indexHeaderVersion: INDEX_HEADER_VERSION,
      };
      await ch.control.send(encodeHeader(offer));
      const resp = decodeHeader(await ch.control.recvMessage());
      if (resp.fs !== FS_RSYNC) throw new Error(`Failed to negotiate migration type: No matching migration types found. Offered types: [${resp.fs} RSYNC], our types: [RSYNC]`);
      let features = rsyncFeaturesOf(resp).filter((f) => ours.includes(f));
      if (!features.includes("bidirectional")) features = ["xattrs", "delete", "compress"].filter((f) => ours.includes(f));
      const sendSnaps = resp.refresh ? snaps.filter((s) => resp.snapshotNames.includes(snapName(s))) : snaps;
      const bwlimit = poolConfig["rsync.bwlimit"] ? checkBwlimit(poolConfig["rsync.bwlimit"]) : undefined;
      if ((resp.indexHeaderVersion ?? 0) > 0) {
        // Go's field names (backup.Config has yaml tags only), as LXD reads them.
        const config = {
          Volume: { ...this.pools.volumeView(row), used_by: [] },
          VolumeSnapshots: sendSnaps.map((s) => ({ description: s.description, expires_at: s.expiresAt, name: snapName(s), config: s.config, content_type: s.contentType, created_at: s.createdAt })),
        };
        await ch.fs.send(Buffer.from(JSON.stringify({ config })));
        await ch.fs.endStream();
        const answer = JSON.parse((await ch.fs.readAll(1 << 20)).toString("utf8") || "{}") as { StatusCode?: number; Error?: string };
        if (answer.StatusCode !== 200) throw new Error(`Failed negotiating migration options: ${answer.Error ?? "no answer"}`);
      }
      for (const s of sendSnaps) {
        await rsyncSend(row.name, await this.copies.path(row, snapName(s)), ch.fs, { features, bwlimit, signal, progress: (n) => progress({ fs_progress: `${snapName(s)}: ${n} bytes` }) });
      }
      await rsyncSend(row.name, await this.copies.path(row), ch.fs, { features, bwlimit, signal, progress: (n) => progress({ fs_progress: `${row.name}: ${n} bytes` }) });
      const msg = decodeControl(await ch.control.recvMessage());
      if (!msg.success) throw new Error(msg.message || "Migration failed on target");
    } catch (e) {
      await sendFailure(ch.control, e);
      throw e;
    }
  }

  // ---- target ----

  /** POST .../volumes/custom with source.type=migration: checks, then the operation's body. */
  checkSink(pool: string, project: string, req: VolumeCopyRequest, sink: SinkRequest): { sockets?: Sockets; refresh: boolean } {
    const { exists } = this.copies.checkTarget(pool, project, req, sink.refresh);
    if (sink.mode === "push") return { sockets: new Sockets(["control", "fs"]), refresh: sink.refresh && exists };
    if (!sink.operation) throw new BadRequest("Missing migration source operation");
    if (!sink.secrets?.control) throw new InternalError("Missing control secret");
    if (!sink.secrets?.fs) throw new InternalError("Missing fs secret");
    return { refresh: sink.refresh && exists };
  }

  async sink(pool: string, project: string, req: VolumeCopyRequest, sink: SinkRequest, plan: { sockets?: Sockets; refresh: boolean }, signal: AbortSignal): Promise<void> {
    let ch: { control: MigrationChannel; fs: MigrationChannel };
    if (plan.sockets) ch = await plan.sockets.wait(signal);
    else {
      const control = await connectPeer(sink.operation!, sink.secrets!.control, sink.certificate ?? "", "control", signal);
      try {
        ch = { control, fs: await connectPeer(sink.operation!, sink.secrets!.fs, sink.certificate ?? "", "fs", signal) };
      } catch (e) {
        await sendFailure(control, e);
        control.close();
        throw e;
      }
    }
    try {
      await this.receive(pool, project, req, { ...sink, refresh: plan.refresh }, ch, signal);
    } finally {
      closeChannels(ch);
    }
  }

  private async receive(pool: string, project: string, req: VolumeCopyRequest, sink: SinkRequest, ch: { control: MigrationChannel; fs: MigrationChannel }, signal: AbortSignal): Promise<void> {
    let created: VolumeRow | undefined;
    try {
      const offer = decodeHeader(await ch.control.recvMessage());
      const offered = offer.fs === FS_RSYNC ? rsyncFeaturesOf(offer) : [];
      const theirs = offered.includes("bidirectional") ? offered : ["xattrs", "delete", "compress"];
      const features = OUR_RSYNC_FEATURES.filter((f) => theirs.includes(f));
      if (!sink.instanceOnly && offer.snapshotNames.length !== offer.snapshots.length) throw new Error("Migration header lists snapshot names without their configuration");
      let snapshots = sink.instanceOnly ? [] : offer.snapshots;
      const target = sink.refresh ? this.copies.target(pool, project, req.name) : undefined;
      if (target) snapshots = await this.copies.refreshPlan(target, snapshots);
      const resp: MigrationHeader = {
        fs: FS_RSYNC,
        rsyncFeatures: rsyncFeaturesMsg(features),
        indexHeaderVersion: Math.min(offer.indexHeaderVersion ?? 0, INDEX_HEADER_VERSION),
        snapshotNames: snapshots.map((s) => s.name),
        snapshots,
        idmap: [],
        refresh: sink.refresh,
      };
      await ch.control.send(encodeHeader(resp));
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
      const work = async () => {
        const specs = new Map<string, { description: string; expiresAt: string }>();
        if ((resp.indexHeaderVersion ?? 0) > 0) {
          const header: unknown = JSON.parse((await ch.fs.readAll(INDEX_HEADER_LIMIT)).toString("utf8"));
          const list = goField(goField(header, "config", "config"), "VolumeSnapshots", "volume_snapshots");
          for (const s of Array.isArray(list) ? list : []) {
            const name = goField(s, "Name", "name");
            const description = goField(s, "Description", "description");
            const expires = goField(s, "ExpiresAt", "expires_at");
            if (typeof name === "string") specs.set(name, { description: typeof description === "string" ? description : "", expiresAt: typeof expires === "string" && expires ? goTimeOf(expires) : ZERO_TIME });
          }
          await ch.fs.send(Buffer.from(JSON.stringify({ StatusCode: 200, Error: "", Refresh: sink.refresh })));
          await ch.fs.endStream();
        }
        const row = target ?? (created = await this.copies.createTarget(pool, project, req));
        const dir = await this.copies.path(row);
        const jail = this.core.paths.dir + "/migration-jail";
        mkdirSync(jail, { recursive: true, mode: 0o700 });
        const own = statSync(dir);
        const keepRoot = () => {
          chownSync(dir, own.uid, own.gid);
          chmodSync(dir, own.mode & 0o7777);
        };
        for (const s of snapshots) {
          await rsyncRecv(dir, jail, ch.fs, { features, signal });
          keepRoot();
          const spec = specs.get(s.name);
          await this.copies.snapshotAs(row, { name: s.name, config: fromConfigList(s.localConfig), description: spec?.description ?? "", expiresAt: spec?.expiresAt ?? ZERO_TIME }, signal);
        }
        if (snapshots.length > 0) await invalidateQuickCheck(dir);
        await rsyncRecv(dir, jail, ch.fs, { features, signal });
        keepRoot();
      };
      await Promise.race([work(), failed]);
      await ch.control.send(encodeControl({ success: true, message: "" }));
    } catch (e) {
      await sendFailure(ch.control, e);
      if (created) await this.pools.deleteCustomVolume(created.pool, created.project, "custom", created.name).catch(() => {});
      throw e;
    }
  }
}

/** A volume snapshot as the header carries it (LXD's volumeSnapshotToProtobuf: config only, dates zero). */
function volumeSnapshotMsg(name: string, config: Record<string, string>): SnapshotMsg {
  return { name, localConfig: toConfigList(config), profiles: [], ephemeral: false, localDevices: [], architecture: 0, stateful: false, creation_date: 0, last_used_date: 0, expiry_date: 0 };
}

function goTimeOf(value: string): string {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) || d.getTime() <= GO_ZERO_SECS * 1000 ? ZERO_TIME : goTime(d);
}
