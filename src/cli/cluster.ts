// `nodelxd cluster recover-from-quorum-loss`: LXD's daemon-side cluster subcommand (main_cluster.go),
// on etcd (src/cluster/quorum-recovery.ts). Runs with the daemon stopped, as LXD's.
import { connect } from "node:net";
import type { ParsedArgs } from "./args.js";
import { Asker } from "./ask.js";
import { pathsFor, resolveLxdDir } from "../daemon/paths.js";
import { recoverFromQuorumLoss } from "../cluster/quorum-recovery.js";

const CONFIRM = `You should run this command only if you are *absolutely* certain that this is
the only database node left in your cluster AND that other database nodes will
never come back (i.e. their LXD daemon won't ever be started again).

This will make this LXD instance the only member of the cluster, and it won't
be possible to perform operations on former cluster members anymore.

However all information about former cluster members will be preserved in the
database, so you can possibly inspect it for further recovery.

You'll be able to permanently delete from the database all information about
former cluster members by running "lxc cluster remove <member-name> --force".

See https://linuxcontainers.org/lxd/docs/master/clustering#recover-from-quorum-loss for more
info.

Do you want to proceed? (yes/no): `;

const USAGE = `Usage:
  nodelxd cluster recover-from-quorum-loss --etcd-data-dir DIR [--etcd-snapshot FILE --etcd-name NAME] [--etcd-endpoint URL] [--etcd-peer-url URL] [--quiet]

Stop this member's daemon and its etcd first; start both again afterwards.`;

function daemonAnswers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(socket);
    c.once("connect", () => (c.destroy(), resolve(true)));
    c.once("error", () => resolve(false));
  });
}

function flag(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name];
  return typeof v === "string" && v !== "" ? v : undefined;
}

export async function clusterCommand(args: ParsedArgs, socket: string): Promise<number> {
  const [sub, ...rest] = args.positional;
  if (sub !== "recover-from-quorum-loss" || rest.length > 0) {
    console.error(sub ? `Error: unknown command "${sub}" for "nodelxd cluster"` : USAGE);
    return 1;
  }
  if (await daemonAnswers(socket)) throw new Error("The LXD daemon is running, please stop it first.");
  const dataDir = flag(args, "etcd-data-dir");
  if (!dataDir) throw new Error(`--etcd-data-dir is required\n\n${USAGE}`);
  const quiet = args.flags.quiet === true || args.flags.q === true || args.flags.quiet === "true";
  if (!quiet) {
    const line = await new Asker().string(CONFIRM, "").catch(() => "");
    if (line.toLowerCase() !== "yes") throw new Error("Recover operation aborted");
  }
  const r = await recoverFromQuorumLoss({
    paths: pathsFor(resolveLxdDir()),
    dataDir,
    snapshot: flag(args, "etcd-snapshot"),
    endpoint: flag(args, "etcd-endpoint"),
    peerUrl: flag(args, "etcd-peer-url"),
    name: flag(args, "etcd-name"),
    say: (l) => console.log(l),
  });
  console.log(`Member ${r.member} is now the only database member; its daemon will use etcd at ${r.endpoint}. Start etcd (without --force-new-cluster) and the daemon.`);
  return 0;
}
