// The three servers the migration tests copy between, as remotes of one stock client: an
// initialised nodelxd (the usual source), a bare nodelxd and real LXD 5.0.2 (each given pool
// `default` on dir as its root disk; real LXD also gets the busybox image to launch its own
// sources). `addresses` are the three listen addresses (host:port), in that order.
import { dirname } from "node:path";
import { startDaemon, type TestDaemon } from "./daemon.js";
import { busyboxImage } from "./image.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "./instances.js";
import { startReferenceLxd, type ReferenceLxd } from "./reference.js";
import { Remotes } from "./remotes.js";

export interface MigrationPeers {
  remotes: Remotes;
  src: InitialisedDaemon;
  dst: TestDaemon;
  ref: ReferenceLxd;
  /** Delete every instance, stop the three servers, remove the client's home. */
  stop(): Promise<void>;
}

export async function startMigrationPeers(homePrefix: string, names: [string, string, string], addresses: [string, string, string]): Promise<MigrationPeers> {
  const remotes = new Remotes(homePrefix);
  const peers: Partial<MigrationPeers> = { remotes };
  const stop = async () => {
    await remotes.deleteInstances();
    await peers.src?.teardown().catch(() => {});
    await peers.dst?.stop().catch(() => {});
    await peers.ref?.stop().catch(() => {});
    remotes.removeHome();
  };
  try {
    const src = (peers.src = await startInitialisedDaemon());
    const dst = (peers.dst = await startDaemon());
    const ref = (peers.ref = await startReferenceLxd());
    const refDir = dirname(ref.socket);
    for (const dir of [dst.dir, refDir]) await remotes.addDefaultPool(dir, true);
    await remotes.listen(names[0], src.dir, addresses[0]);
    await remotes.listen(names[1], dst.dir, addresses[1]);
    await remotes.listen(names[2], refDir, addresses[2]);
    await remotes.local(refDir, "image", "import", busyboxImage(), "--alias", "busybox");
    return { remotes, src, dst, ref, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
