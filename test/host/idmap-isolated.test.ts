// Issue 19: security.idmap.isolated containers get host id ranges no other container uses: not
// the first 65536 ids of the delegation (what every shared container's ids 0-65535 map to), not
// each other's, including copies and profile-made ones, allocated as LXD's findIdmap (after the
// first 65536, lowest free block of security.idmap.size) and persisted in volatile.idmap.*, so a
// restart of the container or of the daemon keeps the map.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let base = 0;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  d = await startInitialisedDaemon();
  const root = readFileSync("/etc/subuid", "utf8").split("\n").find((l) => l.startsWith("root:"))!;
  base = Number(root.split(":")[1]);
}, 120_000);

afterAll(async () => {
  if (d) await d.teardown();
});

/** The uid map the container's init runs with: [nsid, hostid, range] lines. */
function uidMap(name: string): number[][] {
  const pid = JSON.parse(ok("query", `/1.0/instances/${name}/state`)).pid;
  return readFileSync(`/proc/${pid}/uid_map`, "utf8").trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number));
}

const overlaps = (a: number[], b: number[]) => a[1] < b[1] + b[2] && b[1] < a[1] + a[2];

describe("security.idmap.isolated", () => {
  it("gives each isolated container its own block after the shared ids, also to copies and via profiles", async () => {
    const shared = d.launch("shared");
    const i1 = d.launch("iso1", { config: { "security.idmap.isolated": "true" } });
    const i2 = d.instanceName("iso2");
    ok("copy", i1, i2);
    ok("start", i2);
    const p = d.instanceName("isoprof");
    ok("profile", "create", p);
    ok("profile", "set", p, "security.idmap.isolated", "true");
    ok("profile", "set", p, "security.idmap.size", "100000");
    const i3 = d.instanceName("iso3");
    ok("launch", "busybox", i3, "-q", "-p", "default", "-p", p);

    const sharedMap = uidMap(shared)[0];
    expect(sharedMap[1]).toBe(base);
    const maps = [i1, i2, i3].map((n) => uidMap(n)[0]);
    expect(maps.map((m) => m[1])).toEqual([base + 65536, base + 131072, base + 196608]);
    expect(maps.map((m) => m[2])).toEqual([65536, 65536, 100000]);
    // No isolated block overlaps another, nor the ids the shared containers use (their 0-65535).
    for (let a = 0; a < maps.length; a++) {
      expect(overlaps(maps[a], [0, base, 65536])).toBe(false);
      for (let b = a + 1; b < maps.length; b++) expect(overlaps(maps[a], maps[b])).toBe(false);
    }
    // volatile.idmap.base records the block, as LXD.
    expect(ok("config", "get", i2, "volatile.idmap.base").trim()).toBe(String(base + 131072));

    // Persisted: a container restart and a daemon restart keep every map; a new one still avoids them.
    ok("restart", "-f", i1);
    await d.kill9();
    await d.restart();
    for (const [n, m] of [[i1, maps[0]], [i2, maps[1]], [i3, maps[2]]] as const) {
      ok("restart", "-f", n);
      expect(uidMap(n)[0]).toEqual(m);
    }
    const i4 = d.launch("iso4", { config: { "security.idmap.isolated": "true" } });
    expect(uidMap(i4)[0][1]).toBe(base + 296608);
    // Deleting one frees its block for the next (LXD's id recycling).
    ok("delete", "-f", i2);
    const i5 = d.launch("iso5", { config: { "security.idmap.isolated": "true" } });
    expect(uidMap(i5)[0][1]).toBe(base + 131072);
    ok("profile", "remove", i3, p);
    ok("delete", "-f", i3);
    ok("profile", "delete", p);
  }, 240_000);
});
