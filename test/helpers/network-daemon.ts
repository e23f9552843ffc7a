// One initialised daemon per test file for the network services tests, the managed networks
// the file creates (removed with their nft table and dnsmasq afterwards, whatever happened), and
// the two ways those tests call the stock client.
import { afterAll, beforeAll, expect } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "./instances.js";
import { dnsmasqPids, nftChainsOf, sh } from "./net.js";

export interface NetworkTestDaemon {
  readonly d: InitialisedDaemon;
  /** Networks to remove after the file (push every one the tests create). */
  networks: string[];
  /** `lxc ARGS` that must succeed: its stdout. */
  ok(...args: string[]): string;
  /** `lxc ARGS` that must fail: its stderr. */
  fails(...args: string[]): string;
}

export function useNetworkDaemon(): NetworkTestDaemon {
  let daemon: InitialisedDaemon | undefined;
  const t: NetworkTestDaemon = {
    get d() {
      if (!daemon) throw new Error("the daemon is not started yet");
      return daemon;
    },
    networks: [],
    ok(...args) {
      const r = t.d.lxc(...args);
      if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
      return r.stdout;
    },
    fails(...args) {
      const r = t.d.lxc(...args);
      expect(r.code, `lxc ${args.join(" ")} should fail`).not.toBe(0);
      return r.stderr;
    },
  };
  beforeAll(async () => {
    daemon = await startInitialisedDaemon();
  });
  afterAll(async () => {
    await daemon?.teardown();
    for (const n of t.networks) {
      for (const kind of nftChainsOf(n)) sh("nft", ["delete", "chain", "inet", "lxd", `${kind}.${n}`]);
      for (const pid of dnsmasqPids(n)) process.kill(pid, "SIGKILL");
      sh("ip", ["link", "del", n]);
    }
  });
  return t;
}
