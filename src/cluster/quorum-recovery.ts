// `lxd cluster recover-from-quorum-loss` on etcd: run on the one surviving member while its
// daemon and its etcd are stopped. It turns that member's etcd into a one-member etcd cluster
// (from its own data directory with `etcd --force-new-cluster`, or from a snapshot file with
// `etcdctl snapshot restore` first), then rewrites the membership as LXD's recovery does: this
// member is the only database member, the former members stay in the records (Offline, to be
// removed with `lxc cluster remove --force`), the write lock they may hold is cleared, and this
// member's daemon is pointed at its own etcd only. Every step can be run again: a second run on
// the recovered data directory finds one member and the records already rewritten.
import { existsSync, renameSync, statSync } from "node:fs";
import { connect } from "node:net";
import { isAbsolute } from "node:path";
import { closeDatabase, openDatabase } from "../db/database.js";
import type { Paths } from "../daemon/paths.js";
import { run, spawnService } from "../os/exec.js";
import { localGet, localSet } from "./replica.js";
import { ClusterStore, PREFIX } from "./store.js";

export interface QuorumRecoveryOptions {
  paths: Paths;
  /** The surviving etcd member's data directory (`--etcd-data-dir`). */
  dataDir: string;
  /** Rebuild the data directory from this snapshot (`etcdctl snapshot save`) instead. */
  snapshot?: string;
  /** This member's etcd client URL (default: the member's endpoint on its own address). */
  endpoint?: string;
  /** The etcd peer URL to listen on (default: the client URL's host, port 2380 or client port + 1). */
  peerUrl?: string;
  /** The etcd member name (needed with a snapshot). */
  name?: string;
  say(line: string): void;
}

export interface QuorumRecoveryResult {
  member: string;
  endpoint: string;
  etcdMember: string;
  formerMembers: string[];
}

function parseUrl(label: string, value: string): URL {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new Error(`Invalid ${label} ${JSON.stringify(value)}`);
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || !u.port || u.pathname !== "/" || u.search) throw new Error(`Invalid ${label} ${JSON.stringify(value)} (want http://HOST:PORT)`);
  return u;
}

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host, port });
    c.setTimeout(1_000, () => (c.destroy(), resolve(false)));
    c.once("connect", () => (c.destroy(), resolve(true)));
    c.once("error", () => resolve(false));
  });
}

/** This member's own endpoint: the one on the host of its `core.https_address`. */
function ownEndpoint(endpoints: string[], httpsAddress: string): string | undefined {
  const host = httpsAddress.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return endpoints.find((e) => {
    try {
      return new URL(e).hostname.replace(/^\[|\]$/g, "") === host;
    } catch {
      return false;
    }
  });
}

export async function recoverFromQuorumLoss(o: QuorumRecoveryOptions): Promise<QuorumRecoveryResult> {
  if (!isAbsolute(o.dataDir)) throw new Error("--etcd-data-dir must be an absolute path");
  if (o.snapshot !== undefined && (!isAbsolute(o.snapshot) || !existsSync(o.snapshot) || !statSync(o.snapshot).isFile())) throw new Error(`Snapshot file ${JSON.stringify(o.snapshot)} not found`);
  if (o.snapshot === undefined && !existsSync(`${o.dataDir}/member`)) throw new Error(`${JSON.stringify(o.dataDir)} is not an etcd data directory (no member/)`);
  if (o.name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(o.name)) throw new Error(`Invalid etcd member name ${JSON.stringify(o.name)}`);

  const db = openDatabase(o.paths.databaseFile, undefined, { localFile: o.paths.localDatabaseFile });
  try {
    const member = localGet(db, "member_name");
    if (!member) throw new Error("This LXD instance is not clustered");
    const endpoints = JSON.parse(localGet(db, "etcd_endpoints") ?? "[]") as string[];
    const address = (db.prepare("SELECT value FROM local.config WHERE key = 'core.https_address'").get() as { value: string } | undefined)?.value ?? "";
    const endpoint = o.endpoint ?? ownEndpoint(endpoints, address);
    if (!endpoint) throw new Error(`None of the etcd endpoints (${endpoints.join(", ")}) is on this member's address ${JSON.stringify(address)}: give --etcd-endpoint`);
    const client = parseUrl("etcd endpoint", endpoint);
    const clientUrl = `${client.protocol}//${client.host}`;
    const peer = parseUrl("etcd peer URL", o.peerUrl ?? `${client.protocol}//${client.host.replace(/:\d+$/, "")}:${client.port === "2379" ? 2380 : Number(client.port) + 1}`);
    const peerUrl = `${peer.protocol}//${peer.host}`;
    if (await answers(client.hostname.replace(/^\[|\]$/g, ""), Number(client.port))) throw new Error(`Something still answers on ${clientUrl}: stop this member's etcd first`);

    if (o.snapshot !== undefined) {
      if (!o.name) throw new Error("--etcd-name is required with --etcd-snapshot");
      if (existsSync(o.dataDir)) {
        const aside = `${o.dataDir}.before-recovery-${Date.now()}`;
        renameSync(o.dataDir, aside);
        o.say(`Kept the former etcd data directory as ${aside}`);
      }
      await run("etcdctl", ["snapshot", "restore", o.snapshot, "--data-dir", o.dataDir, "--name", o.name, "--initial-cluster", `${o.name}=${peerUrl}`, "--initial-advertise-peer-urls", peerUrl, "--initial-cluster-token", `nodelxd-recovered-${member}`], { env: { ETCDCTL_API: "3" } });
      o.say(`Restored ${o.snapshot} into ${o.dataDir}`);
    }

    // The data directory's own member, alone: etcd rewrites its membership at start.
    const args = ["--data-dir", o.dataDir, "--force-new-cluster", "--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl, "--listen-peer-urls", peerUrl];
    if (o.name) args.push("--name", o.name);
    const etcd = spawnService("etcd", args);
    let exitedEarly: number | string | undefined;
    void etcd.exited.then((c) => (exitedEarly = c));
    const store = new ClusterStore([clientUrl]);
    try {
      const deadline = Date.now() + 60_000;
      let etcdMember = "";
      for (;;) {
        if (exitedEarly !== undefined) throw new Error(`etcd --force-new-cluster exited (${exitedEarly}): ${etcd.output()}`);
        try {
          const list = await store.client.cluster.memberList({});
          const only = list.members.length === 1 ? list.members[0] : undefined;
          if (only?.peerURLs.length) {
            // Without --etcd-name the member runs as "default" until etcd is started with its own name.
            etcdMember = `${o.name ?? only.ID} (${only.peerURLs.join(", ")})`;
            break;
          }
        } catch {
          /* not serving yet */
        }
        if (Date.now() > deadline) throw new Error(`etcd did not come up as a one-member cluster: ${etcd.output()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      o.say(`etcd member ${etcdMember} is now the only member of its cluster`);

      const records = await store.members();
      if (!records.some((m) => m.name === member)) throw new Error(`Member ${JSON.stringify(member)} is not in the cluster's records`);
      const former: string[] = [];
      for (const m of records) {
        const roles = m.name === member ? [...new Set(["database", ...m.roles])] : m.roles.filter((r) => r !== "database");
        if (m.name !== member) former.push(m.name);
        if (roles.join(",") !== m.roles.join(",")) await store.putMember({ ...m, roles });
      }
      // The write lock and the election may be held by a member that is gone.
      await store.client.delete().prefix(`${PREFIX}lock/`);
      await store.client.delete().prefix(`${PREFIX}election/`);
      for (const f of former) await store.client.delete().key(`${PREFIX}alive/${f}`);
      localSet(db, "etcd_endpoints", JSON.stringify([clientUrl]));
      // The replica may hold entries the surviving etcd never got (or, from a snapshot, newer ones).
      localSet(db, "reload_replica", "1");
      if (former.length) o.say(`Former members kept (Offline; remove them with "lxc cluster remove <member-name> --force"): ${former.join(", ")}`);
      return { member, endpoint: clientUrl, etcdMember, formerMembers: former };
    } finally {
      store.close();
      if (exitedEarly === undefined) {
        process.kill(etcd.pid, "SIGTERM");
        await etcd.exited;
      }
    }
  } finally {
    closeDatabase(db);
  }
}
