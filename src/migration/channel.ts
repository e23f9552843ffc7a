// The one migration channel both instance and custom volume migrations use (LXD 5.0.2's
// migrate.go / migration_volumes.go): the control and fs websockets (accepted by a websocket
// operation, or dialled to the peer's operation), the MigrationHeader negotiation of the
// transport (LXD's TypesToHeader/MatchTypes: BTRFS when both pools are btrfs, else RSYNC),
// the index header frame, and the fs transfer by the negotiated type: one rsync stream per
// snapshot then the volume, or the btrfs migration header and one `btrfs send` stream each.
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, mkdirSync, statSync } from "node:fs";
import type { Readable } from "node:stream";
import type { WebSocket } from "ws";
import { BadRequest, InternalError } from "../shared/errors.js";
import type { OperationContext, OperationManager } from "../operations/manager.js";
import type { OperationView } from "../operations/types.js";
import type { StagedStreams, StreamSink } from "../storage/drivers/types.js";
import { checkSubvolumes } from "../storage/drivers/btrfs-send.js";
import { recvDisk, sendDisk } from "./block-stream.js";
import { decodeControl, decodeHeader, encodeControl, encodeHeader, FS_BLOCK_AND_RSYNC, FS_BTRFS, FS_RSYNC, rsyncFeaturesMsg, rsyncFeaturesOf, type MigrationHeader } from "./proto.js";
import { invalidateQuickCheck, rsyncRecv, rsyncSend } from "./rsync-stream.js";
import { rsyncNegotiates } from "../storage/rsync.js";
import { connectPeer, MigrationChannel } from "./ws-io.js";

const CONNECT_TIMEOUT_MS = 10_000;
const INDEX_HEADER_LIMIT = 16 << 20;
const BTRFS_HEADER_LIMIT = 16 << 20;

/** The rsync features we speak (all of LXD's). */
export const OUR_RSYNC_FEATURES = ["xattrs", "delete", "compress", "bidirectional"];
/**
 * Our MigrationHeader extension's rsync feature: this end's rsync negotiates checksum and
 * compression (3.2+). When the source offers it and our rsync does too, the receiver lets the
 * two rsyncs negotiate (xxh128 and zstd: ten times less CPU than the md5 and zlib that LXD's
 * fixed `-e.iLsfx` pins). LXD peers never send the field and get exactly LXD's transfer.
 */
export const NODELXD_RSYNC_NEGOTIATE = "negotiate";

/** Our header extension (the field LXD ignores), as this host's rsync allows. */
export async function nodelxdExtension(): Promise<{ rsync: string[] }> {
  return { rsync: (await rsyncNegotiates()) ? [NODELXD_RSYNC_NEGOTIATE] : [] };
}

/** The btrfs features we speak: the JSON subvolume header; root subvolumes only, no UUID-based refresh. */
export const OUR_BTRFS_FEATURES = ["migration_header"];
/** Go's MigrationFSType names, for LXD's negotiation error. */
const FS_NAMES = ["RSYNC", "BTRFS", "ZFS", "RBD", "BLOCK_AND_RSYNC"];

/** The migration websockets; `criu` only in a live migration (the CRIU dump's rsync stream). */
export type Channels = { control: MigrationChannel; fs: MigrationChannel; criu?: MigrationChannel };

/** A push target: the peer's operation and the secrets of its websockets. */
export interface PushTarget {
  operation: string;
  certificate: string;
  websockets: Record<string, string>;
}

/** The target side's request (source.type=migration of an instance or volume create). */
export interface SinkRequest {
  mode: "pull" | "push";
  operation?: string;
  certificate?: string;
  secrets?: Record<string, string>;
  refresh: boolean;
  instanceOnly: boolean;
  live: boolean;
}

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

  async wait(signal: AbortSignal): Promise<Channels> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error("Timed out waiting for migration connections")), CONNECT_TIMEOUT_MS)));
    const aborted = new Promise<never>((_, rej) => signal.addEventListener("abort", () => rej(new Error("Operation cancelled")), { once: true }));
    try {
      await Promise.race([this.all, timeout, aborted]);
    } finally {
      clearTimeout(timer);
    }
    return { control: this.got.get("control")!, fs: this.got.get("fs")!, criu: this.got.get("criu") };
  }

  closeAll(): void {
    for (const c of this.got.values()) c.close();
  }
}

export function closeChannels(ch: Partial<Channels>): void {
  ch.control?.close();
  ch.fs?.terminate();
  ch.criu?.terminate();
}

export async function sendFailure(control: MigrationChannel | undefined, err: unknown): Promise<void> {
  if (!control) return;
  await control.send(encodeControl({ success: false, message: (err as Error).message })).catch(() => {});
}

/**
 * The source's operation: with `target` (push) a task that dials the target's websockets, else
 * a websocket operation whose `control` and `fs` secrets (and `criu`, live) the target (or a
 * relaying client) uses.
 */
export function sourceOperation(operations: OperationManager, spec: { description: string; project: string; resources: Record<string, string[]>; target?: PushTarget; live?: boolean }, run: (ch: Channels, ctx: OperationContext) => Promise<void>): OperationView {
  const base = { description: spec.description, project: spec.project, resources: spec.resources };
  const target = spec.target;
  if (target) {
    return operations.create({
      ...base,
      class: "task",
      run: async (ctx) => {
        const ch: Partial<Channels> = {};
        try {
          for (const [n, s] of Object.entries(target.websockets)) {
            if (n !== "control" && n !== "fs" && n !== "criu") throw new Error(`Unknown secret provided: ${n}`);
            ch[n] = await connectPeer(target.operation, s, target.certificate, n, ctx.signal);
          }
          if (!ch.control || !ch.fs) throw new Error("Missing control or fs secret");
          await run({ control: ch.control, fs: ch.fs, criu: ch.criu }, ctx);
        } finally {
          closeChannels(ch);
        }
      },
    });
  }
  const sockets = new Sockets(spec.live ? ["control", "fs", "criu"] : ["control", "fs"]);
  return operations.create({
    ...base,
    class: "websocket",
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

/** The target's sockets (push: the source connects to us), or undefined after checking a pull's fields. */
export function sinkSockets(req: SinkRequest): Sockets | undefined {
  if (req.mode === "push") return new Sockets(req.live ? ["control", "fs", "criu"] : ["control", "fs"]);
  if (!req.operation) throw new BadRequest("Missing migration source operation");
  if (!req.secrets?.control) throw new InternalError("Missing control secret");
  if (!req.secrets?.fs) throw new InternalError("Missing fs secret");
  return undefined;
}

/** The target's channels: wait for the source (push) or dial it (pull). */
export async function sinkChannels(req: SinkRequest, sockets: Sockets | undefined, signal: AbortSignal): Promise<Channels> {
  if (sockets) return sockets.wait(signal);
  const control = await connectPeer(req.operation!, req.secrets!.control, req.certificate ?? "", "control", signal);
  let fs: MigrationChannel | undefined;
  try {
    fs = await connectPeer(req.operation!, req.secrets!.fs, req.certificate ?? "", "fs", signal);
    const criu = req.secrets!.criu ? await connectPeer(req.operation!, req.secrets!.criu, req.certificate ?? "", "criu", signal) : undefined;
    return { control, fs, criu };
  } catch (e) {
    await sendFailure(control, e);
    closeChannels({ control, fs });
    throw e;
  }
}

/** A push target's websocket operation (the source connects to its secrets); `run` gets the channels. */
export function sinkOperation(operations: OperationManager, spec: { description: string; project: string; resources: Record<string, string[]> }, sockets: Sockets, run: (signal: AbortSignal) => Promise<void>): OperationView {
  return operations.create({ ...spec, class: "websocket", metadata: { ...sockets.secrets }, secrets: sockets.secrets, connect: (sec, ws) => sockets.connect(sec, ws as WebSocket), run: (ctx) => run(ctx.signal) });
}

// ---- transport negotiation ----

/** One transport a pool offers, with its optional features (LXD's migration.Type). */
export interface Transport {
  fs: number;
  features: string[];
}

/**
 * A pool's transports, preferred first: btrfs send when its driver streams btrfs, then rsync,
 * or for block content the raw block stream (LXD's MigrationTypes).
 */
export function poolTransports(streamType: string | undefined, poolConfig: Record<string, string> | undefined, contentType = "filesystem"): Transport[] {
  const rsync = poolConfig?.["rsync.compression"] === "false" ? OUR_RSYNC_FEATURES.filter((f) => f !== "compress") : OUR_RSYNC_FEATURES;
  const out: Transport[] = [];
  if (streamType === "btrfs") out.push({ fs: FS_BTRFS, features: OUR_BTRFS_FEATURES });
  out.push({ fs: contentType === "block" ? FS_BLOCK_AND_RSYNC : FS_RSYNC, features: [...rsync] });
  return out;
}

/** Transports that carry rsync features (RSYNC, and BLOCK_AND_RSYNC for its filesystem part). */
const usesRsync = (fs: number) => fs === FS_RSYNC || fs === FS_BLOCK_AND_RSYNC;

/** LXD's FallbackMigrationType: what every pool can do for the content our transports are for. */
const fallbackOf = (ours: Transport[]) => (ours.some((t) => t.fs === FS_BLOCK_AND_RSYNC) ? FS_BLOCK_AND_RSYNC : FS_RSYNC);

/** The header fields for a list of transports (LXD's TypesToHeader). */
export function transportsHeader(types: Transport[]): Pick<MigrationHeader, "fs" | "rsyncFeatures" | "btrfsFeatures"> {
  const first = types[0];
  const out: Pick<MigrationHeader, "fs" | "rsyncFeatures" | "btrfsFeatures"> = { fs: first.fs };
  if (first.fs === FS_BTRFS) out.btrfsFeatures = { migration_header: first.features.includes("migration_header"), header_subvolumes: first.features.includes("header_subvolumes"), header_subvolume_uuids: first.features.includes("header_subvolume_uuids") };
  const rsync = types.find((t) => usesRsync(t.fs));
  if (rsync) out.rsyncFeatures = rsyncFeaturesMsg(rsync.features);
  return out;
}

function btrfsFeaturesOf(h: MigrationHeader): string[] {
  const f = h.btrfsFeatures ?? {};
  return [f.migration_header && "migration_header", f.header_subvolumes && "header_subvolumes", f.header_subvolume_uuids && "header_subvolume_uuids"].filter((x): x is string => !!x);
}

/** LXD's MatchTypes: our transports the peer's header allows (its type, or the RSYNC fallback), with the common features. */
export function matchTransports(offer: MigrationHeader, ours: Transport[], refresh = false): Transport[] {
  const offered = [offer.fs, fallbackOf(ours)];
  const matched: Transport[] = [];
  for (const t of ours) {
    for (const fs of offered) {
      if (fs !== t.fs) continue;
      let theirs: string[] = [];
      if (fs === FS_BTRFS) theirs = btrfsFeaturesOf(offer);
      else if (usesRsync(fs)) {
        theirs = rsyncFeaturesOf(offer);
        if (!theirs.includes("bidirectional")) theirs = ["xattrs", "delete", "compress"];
      }
      const common = t.features.filter((f) => theirs.includes(f));
      // An optimized btrfs refresh needs subvolume UUIDs (we refresh through rsync).
      if (refresh && t.fs === FS_BTRFS && !common.includes("header_subvolume_uuids")) continue;
      matched.push({ fs: t.fs, features: common });
    }
  }
  if (matched.length === 0) {
    const names = (l: number[]) => `[${l.map((n) => FS_NAMES[n] ?? String(n)).join(" ")}]`;
    throw new Error(`No matching migration types found. Offered types: ${names(offered)}, our types: ${names(ours.map((t) => t.fs))}`);
  }
  return matched;
}

/** The rsync features to use with a peer's header (its offer, or LXD 3.7's when it has no bidirectional). */
export function rsyncFeaturesWith(h: MigrationHeader, ours: readonly string[] = OUR_RSYNC_FEATURES): string[] {
  const theirs = rsyncFeaturesOf(h);
  if (!theirs.includes("bidirectional")) return ["xattrs", "delete", "compress"].filter((f) => ours.includes(f));
  return ours.filter((f) => theirs.includes(f));
}

/** Source: send our offer, read the target's answer, and agree on the transport. */
export async function sourceHandshake(ch: Channels, offer: MigrationHeader, ours: Transport[]): Promise<{ resp: MigrationHeader; transport: Transport; rsync: string[] }> {
  await ch.control.send(encodeHeader({ ...offer, ...transportsHeader(ours), nodelxd: await nodelxdExtension() }));
  const resp = decodeHeader(await ch.control.recvMessage());
  let transport: Transport;
  try {
    transport = matchTransports(resp, ours)[0];
  } catch (e) {
    throw new Error(`Failed to negotiate migration type: ${(e as Error).message}`);
  }
  const rsyncOurs = ours.find((t) => usesRsync(t.fs))?.features ?? OUR_RSYNC_FEATURES;
  return { resp, transport, rsync: rsyncFeaturesWith(resp, rsyncOurs) };
}

/**
 * Target: the transports to answer a source's offer with (first is the one used), the rsync
 * features, and whether the receiving rsync negotiates with the sender (a nodelxd source whose
 * rsync and ours both can; `local` is nodelxdExtension()'s). A nodelxd source is answered with
 * the extension too; an LXD source gets LXD's answer.
 */
export function targetAnswer(offer: MigrationHeader, ours: Transport[], refresh: boolean, local: { rsync: string[] } = { rsync: [] }): { transport: Transport; fields: Pick<MigrationHeader, "fs" | "rsyncFeatures" | "btrfsFeatures" | "nodelxd">; rsync: string[]; negotiate: boolean } {
  const matched = matchTransports(offer, ours, refresh);
  const fields: Pick<MigrationHeader, "fs" | "rsyncFeatures" | "btrfsFeatures" | "nodelxd"> = transportsHeader(matched);
  let negotiate = false;
  if (offer.nodelxd) {
    const rsync = local.rsync.filter((f) => (offer.nodelxd?.rsync ?? []).includes(f));
    fields.nodelxd = { rsync };
    negotiate = matched[0].fs === FS_RSYNC && rsync.includes(NODELXD_RSYNC_NEGOTIATE);
  }
  return { transport: matched[0], fields, rsync: matched.find((t) => usesRsync(t.fs))?.features ?? rsyncFeaturesWith(offer), negotiate };
}

// ---- index header and failures ----

/** Source: the index header frame (backup.yaml's config as JSON) and the target's answer. */
export async function sendIndexHeader(ch: Channels, config: unknown): Promise<void> {
  await ch.fs.send(Buffer.from(JSON.stringify({ config })));
  await ch.fs.endStream();
  const answer = JSON.parse((await ch.fs.readAll(1 << 20)).toString("utf8") || "{}") as { StatusCode?: number; Error?: string };
  if (answer.StatusCode !== 200) throw new Error(`Failed negotiating migration options: ${answer.Error ?? "no answer"}`);
}

/** Target: read the index header frame and answer it. */
export async function recvIndexHeader(ch: Channels, refresh: boolean): Promise<unknown> {
  const header: unknown = JSON.parse((await ch.fs.readAll(INDEX_HEADER_LIMIT)).toString("utf8"));
  await ch.fs.send(Buffer.from(JSON.stringify({ StatusCode: 200, Error: "", Refresh: refresh })));
  await ch.fs.endStream();
  return header;
}

/** Target: rejects when the source reports a failure (or drops) on the control channel. */
export function sourceFailure(control: MigrationChannel): Promise<never> {
  const failed = new Promise<never>((_, reject) => {
    void (async () => {
      try {
        const msg = decodeControl(await control.recvMessage());
        if (!msg.success) reject(new Error(msg.message || "Migration failed on source"));
      } catch (e) {
        reject(new Error(`Got error reading migration source: ${(e as Error).message}`));
      }
    })();
  });
  failed.catch(() => {});
  return failed;
}

/** Source: wait for the target's final MigrationControl. */
export async function targetResult(control: MigrationChannel): Promise<void> {
  const msg = decodeControl(await control.recvMessage());
  if (!msg.success) throw new Error(msg.message || "Migration failed on target");
}

export const sendSuccess = (control: MigrationChannel) => control.send(encodeControl({ success: true, message: "" }));

// ---- the fs transfer ----

/** How often a transfer updates its operation's metadata (LXD's progress tracker: once a second). */
const PROGRESS_INTERVAL_MS = 1000;

/**
 * A stream's progress callback for a label, reporting at most once per `interval`: each report
 * is an operation event and a database write, and a transfer moves a 64 KiB chunk every few
 * microseconds (reporting each one cost more CPU than the transfer).
 */
export function progressEvery(interval: number, report: (m: Record<string, unknown>) => void, now: () => number = Date.now): (label: string) => (bytes: number) => void {
  let last = -Infinity;
  return (label) => (n) => {
    const t = now();
    if (t - last < interval) return;
    last = t;
    report({ fs_progress: `${label}: ${n} bytes` });
  };
}

export interface SendPlan {
  /** Snapshots to send, oldest first. */
  snapshots: string[];
  /** rsync: the tree of a snapshot, or of the volume (undefined); block: its raw disk. */
  path(snapshot: string | undefined): Promise<string>;
  /** btrfs: the driver's send streams. */
  streams?(snapshots: string[], out: StreamSink): Promise<void>;
  /** Progress label of the volume (its name). */
  label: string;
  bwlimit?: string;
}

function pumpStream(data: Readable, fs: MigrationChannel, progress?: (n: number) => void): Promise<void> {
  return fs.sendStream(data, progress);
}

/** Source: send the snapshots and the volume by the negotiated transport. */
export async function sendData(ch: Channels, t: Transport, rsync: string[], plan: SendPlan, opts: { signal: AbortSignal; progress: (m: Record<string, unknown>) => void }): Promise<void> {
  const progress = progressEvery(PROGRESS_INTERVAL_MS, opts.progress);
  if (t.fs === FS_BTRFS) {
    if (!plan.streams) throw new Error("Optimized transfer is not available for this volume");
    await plan.streams(plan.snapshots, {
      header: async (subvolumes) => {
        if (!t.features.includes("migration_header")) return;
        await ch.fs.send(Buffer.from(JSON.stringify({ subvolumes })));
        await ch.fs.endStream();
      },
      stream: (snapshot, data) => pumpStream(data, ch.fs, progress(snapshot ?? plan.label)),
    });
    return;
  }
  if (t.fs === FS_BLOCK_AND_RSYNC) {
    // Custom block volumes: each snapshot's disk, then the volume's (no filesystem part).
    for (const s of plan.snapshots) await sendDisk(await plan.path(s), ch.fs, progress(s));
    await sendDisk(await plan.path(undefined), ch.fs, progress(plan.label));
    return;
  }
  for (const s of plan.snapshots) await rsyncSend(plan.label, await plan.path(s), ch.fs, { features: rsync, bwlimit: plan.bwlimit, signal: opts.signal, progress: progress(s) });
  await rsyncSend(plan.label, await plan.path(undefined), ch.fs, { features: rsync, bwlimit: plan.bwlimit, signal: opts.signal, progress: progress(plan.label) });
}

export interface RecvPlan {
  /** Snapshots to receive, in the order they come. */
  snapshots: string[];
  /** rsync: the volume's directory (received into, then snapshotted); block: the volume's raw disk. */
  dir(): Promise<string>;
  /** btrfs: stage the driver's receive of the streams. */
  streams?(snapshots: string[], next: () => Readable): Promise<StagedStreams>;
  /** Record snapshot `name`: snapshot the volume (rsync) or move the received subvolume in (`place`, btrfs). */
  addSnapshot(name: string, place?: () => Promise<void>): Promise<void>;
  /** rsync passes of the volume (2: a running source's final sync). */
  passes: number;
  /** The last snapshot's creation time (unix seconds, the source's clock), when the peer says. */
  lastSnapshotSec?: number;
  label: string;
  jail: string;
}

/** Target: receive the snapshots and the volume by the negotiated transport. */
export async function recvData(ch: Channels, t: Transport, rsync: string[], plan: RecvPlan, opts: { signal: AbortSignal; progress: (m: Record<string, unknown>) => void; negotiate?: boolean }): Promise<void> {
  if (t.fs === FS_BTRFS) {
    if (!plan.streams) throw new Error("Optimized transfer is not available for this volume");
    // The source's subvolume list must be exactly what was agreed: each snapshot, then the volume.
    if (t.features.includes("migration_header")) {
      const header = JSON.parse((await ch.fs.readAll(BTRFS_HEADER_LIMIT)).toString("utf8")) as { subvolumes?: unknown };
      checkSubvolumes(header?.subvolumes, plan.snapshots);
    }
    const staged = await plan.streams(plan.snapshots, () => ch.fs.readStream());
    try {
      for (const s of plan.snapshots) await plan.addSnapshot(s, () => staged.placeSnapshot(s));
      await staged.placeVolume();
    } finally {
      await staged.discard();
    }
    return;
  }
  if (t.fs === FS_BLOCK_AND_RSYNC) {
    // Each snapshot's disk lands on the volume's disk, which is then snapshotted; the volume's last.
    const disk = await plan.dir();
    const progress = progressEvery(PROGRESS_INTERVAL_MS, opts.progress);
    for (const s of plan.snapshots) {
      await recvDisk(disk, ch.fs, { progress: progress(s) });
      await plan.addSnapshot(s);
    }
    await recvDisk(disk, ch.fs, { progress: progress(plan.label) });
    return;
  }
  const dir = await plan.dir();
  mkdirSync(plan.jail, { recursive: true, mode: 0o700 });
  // rsync gives the volume's root the peer's owner and mode (LXD keeps 0100 there): ours stay.
  const own = statSync(dir);
  const keepRoot = () => {
    chownSync(dir, own.uid, own.gid);
    chmodSync(dir, own.mode & 0o7777);
  };
  const progress = progressEvery(PROGRESS_INTERVAL_MS, opts.progress);
  for (const s of plan.snapshots) {
    await rsyncRecv(dir, plan.jail, ch.fs, { features: rsync, negotiate: opts.negotiate, signal: opts.signal, progress: progress(s) });
    keepRoot();
    await plan.addSnapshot(s);
  }
  if (plan.snapshots.length > 0) await invalidateQuickCheck(dir, plan.lastSnapshotSec);
  for (let pass = plan.passes; pass > 0; pass--) {
    await rsyncRecv(dir, plan.jail, ch.fs, { features: rsync, negotiate: opts.negotiate, signal: opts.signal, progress: progress(plan.label) });
    keepRoot();
  }
}
