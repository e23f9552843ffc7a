// Custom volume migration between servers (LXD 5.0.2's migrate_storage_volumes.go) over
// channel.ts (BTRFS between btrfs pools, else RSYNC): the source answers POST /1.0/storage-pools/{pool}/volumes/custom/{vol}
// {migration: true} with a websocket operation (secrets `control` and `fs`) or connects out to
// a target's operation (push); the target is POST .../volumes/custom with source.type
// migration. The source offers a MigrationHeader whose snapshots are the volume's (their
// config as localConfig), the index header carries backup.yaml's volume and volume_snapshots,
// then each snapshot (oldest first) and the volume; the target ends
// with MigrationControl. A refresh keeps the target's snapshots of the same names.
import type { OperationManager } from "../operations/manager.js";
import type { VolumeRow } from "../db/storage-repo.js";
import type { OperationView } from "../operations/types.js";
import { checkBwlimit } from "../storage/rsync.js";
import type { VolumeCopyRequest, VolumeCopyService } from "../storage/volume-copy.js";
import type { PoolService } from "../storage/pool-service.js";
import type { VolumeSnapshotService } from "../storage/volume-snapshots.js";
import { ZERO_TIME, goTime } from "../instances/snapshots.js";
import { fromConfigList, goField, toConfigList } from "./instances.js";
import { decodeHeader, encodeHeader, FS_RSYNC, INDEX_HEADER_VERSION, type MigrationHeader, type SnapshotMsg } from "./proto.js";
import { closeChannels, nodelxdExtension, poolTransports, recvData, recvIndexHeader, sendData, sendFailure, sendIndexHeader, sendSuccess, sinkChannels, sinkSockets, sourceFailure, sourceHandshake, sourceOperation, targetAnswer, targetResult, type Channels, type PushTarget, type SinkRequest, type Sockets } from "./channel.js";
const GO_ZERO_SECS = -62135596800;

export interface VolumeSourceRequest {
  volumeOnly: boolean;
  target?: PushTarget;
}

export class VolumeMigration {
  constructor(
    private readonly deps: { operations: OperationManager; lxdDir: string },
    private readonly pools: PoolService,
    private readonly snapshots: VolumeSnapshotService,
    private readonly copies: VolumeCopyService,
  ) {}

  // ---- source ----

  startSource(pool: string, project: string, name: string, req: VolumeSourceRequest): OperationView {
    const row = this.copies.source(pool, project, name);
    const resources = { storage_volumes: [`/1.0/storage-pools/${pool}/volumes/custom/${name}`] };
    return sourceOperation(this.deps.operations, { description: "Migrating storage volume", project, resources, target: req.target }, (ch, ctx) => this.runSource(row, req, ch, (m) => ctx.updateMetadata(m), ctx.signal));
  }

  private async runSource(row: VolumeRow, req: VolumeSourceRequest, ch: Channels, progress: (m: Record<string, unknown>) => void, signal: AbortSignal): Promise<void> {
    try {
      const snaps = req.volumeOnly ? [] : this.snapshots.list(row.pool, row.project, row.name);
      const snapName = (s: VolumeRow) => s.name.slice(row.name.length + 1);
      const poolConfig = this.pools.pool(row.pool).config;
      const offer: MigrationHeader = {
        fs: FS_RSYNC,
        idmap: [],
        snapshotNames: snaps.map(snapName),
        snapshots: snaps.map((s) => volumeSnapshotMsg(snapName(s), s.config)),
        indexHeaderVersion: INDEX_HEADER_VERSION,
      };
      const { resp, transport, rsync } = await sourceHandshake(ch, offer, poolTransports(this.pools.streamType(row.pool), poolConfig, row.contentType));
      const sendSnaps = resp.refresh ? snaps.filter((s) => resp.snapshotNames.includes(snapName(s))) : snaps;
      if ((resp.indexHeaderVersion ?? 0) > 0) {
        // Go's field names (backup.Config has yaml tags only), as LXD reads them.
        await sendIndexHeader(ch, {
          Volume: { ...this.pools.volumes.volumeView(row), used_by: [] },
          VolumeSnapshots: sendSnaps.map((s) => ({ description: s.description, expires_at: s.expiresAt, name: snapName(s), config: s.config, content_type: s.contentType, created_at: s.createdAt })),
        });
      }
      await sendData(ch, transport, rsync, {
        snapshots: sendSnaps.map(snapName),
        path: (s) => this.copies.path(row, s),
        streams: (names, out) => this.pools.sendStreams(row, names, out, { signal }),
        label: row.name,
        bwlimit: poolConfig["rsync.bwlimit"] ? checkBwlimit(poolConfig["rsync.bwlimit"]) : undefined,
      }, { signal, progress });
      await targetResult(ch.control);
    } catch (e) {
      await sendFailure(ch.control, e);
      throw e;
    }
  }

  // ---- target ----

  /** POST .../volumes/custom with source.type=migration: checks, then the operation's body. */
  checkSink(pool: string, project: string, req: VolumeCopyRequest, sink: SinkRequest): { sockets?: Sockets; refresh: boolean } {
    const { exists } = this.copies.checkTarget(pool, project, req, sink.refresh);
    return { sockets: sinkSockets(sink), refresh: sink.refresh && exists };
  }

  async sink(pool: string, project: string, req: VolumeCopyRequest, sink: SinkRequest, plan: { sockets?: Sockets; refresh: boolean }, signal: AbortSignal): Promise<void> {
    const ch = await sinkChannels(sink, plan.sockets, signal);
    try {
      await this.receive(pool, project, req, { ...sink, refresh: plan.refresh }, ch, signal);
    } finally {
      closeChannels(ch);
    }
  }

  private async receive(pool: string, project: string, req: VolumeCopyRequest, sink: SinkRequest, ch: Channels, signal: AbortSignal): Promise<void> {
    let created: VolumeRow | undefined;
    try {
      const offer = decodeHeader(await ch.control.recvMessage());
      if (!sink.instanceOnly && offer.snapshotNames.length !== offer.snapshots.length) throw new Error("Migration header lists snapshot names without their configuration");
      let snapshots = sink.instanceOnly ? [] : offer.snapshots;
      const target = sink.refresh ? this.copies.target(pool, project, req.name) : undefined;
      if (target) snapshots = await this.copies.refreshPlan(target, snapshots);
      const contentType = target?.contentType ?? (req.content_type || "filesystem");
      const { transport, fields, rsync, negotiate } = targetAnswer(offer, poolTransports(this.pools.streamType(pool), this.pools.pool(pool).config, contentType), sink.refresh, await nodelxdExtension());
      const resp: MigrationHeader = {
        ...fields,
        indexHeaderVersion: Math.min(offer.indexHeaderVersion ?? 0, INDEX_HEADER_VERSION),
        snapshotNames: snapshots.map((s) => s.name),
        snapshots,
        idmap: [],
        refresh: sink.refresh,
      };
      await ch.control.send(encodeHeader(resp));
      const failed = sourceFailure(ch.control);
      const work = async () => {
        const specs = new Map<string, { description: string; expiresAt: string }>();
        if ((resp.indexHeaderVersion ?? 0) > 0) {
          const header = await recvIndexHeader(ch, sink.refresh);
          const list = goField(goField(header, "config", "config"), "VolumeSnapshots", "volume_snapshots");
          for (const s of Array.isArray(list) ? list : []) {
            const name = goField(s, "Name", "name");
            const description = goField(s, "Description", "description");
            const expires = goField(s, "ExpiresAt", "expires_at");
            if (typeof name === "string") specs.set(name, { description: typeof description === "string" ? description : "", expiresAt: typeof expires === "string" && expires ? goTimeOf(expires) : ZERO_TIME });
          }
        }
        const row = target ?? (created = await this.copies.createTarget(pool, project, req));
        const byName = new Map(snapshots.map((s) => [s.name, s]));
        await recvData(ch, transport, rsync, {
          snapshots: snapshots.map((s) => s.name),
          dir: () => this.copies.path(row),
          streams: (names, next) => this.pools.receiveStreams(row, names, next, { signal }),
          addSnapshot: async (name, place) => {
            const spec = specs.get(name);
            await this.copies.snapshotAs(row, { name, config: fromConfigList(byName.get(name)?.localConfig), description: spec?.description ?? "", expiresAt: spec?.expiresAt ?? ZERO_TIME }, signal, place);
          },
          passes: 1,
          label: req.name,
          jail: this.deps.lxdDir + "/migration-jail",
        }, { signal, progress: () => {}, negotiate });
      };
      await Promise.race([work(), failed]);
      await sendSuccess(ch.control);
    } catch (e) {
      await sendFailure(ch.control, e);
      if (created) await this.pools.volumes.deleteCustomVolume(created.pool, created.project, "custom", created.name).catch(() => {});
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
