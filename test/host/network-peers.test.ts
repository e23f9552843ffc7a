// /1.0/networks/{name}/peers answered as LXD 5.0.2 answers them for every network that is not
// OVN (lxd/network_peer.go): the network is loaded first, then refused with a 400 because the
// driver has no peering. Checked with the stock client and the raw API.
import { describe, expect, it } from "vitest";
import { useNetworkDaemon } from "../helpers/network-daemon.js";
import { runId } from "../helpers/net.js";

const id = runId();
const t = useNetworkDaemon();
const { ok, fails, networks } = t;

describe("network peers on non-OVN networks (network_peer)", () => {
  it("refuse every method as 5.0.2 does, after loading the network", async () => {
    const br = `bgp${id}`;
    networks.push(br);
    ok("network", "create", br, "ipv4.address=10.123.40.1/24", "ipv4.nat=false", "ipv6.address=none");
    const refused = [400, 'Network driver "bridge" does not support peering'];
    for (const [method, path, body] of [
      ["GET", `/1.0/networks/${br}/peers`, undefined],
      ["GET", `/1.0/networks/${br}/peers?recursion=1`, undefined],
      ["POST", `/1.0/networks/${br}/peers`, { name: "p1", target_project: "default", target_network: "x" }],
      ["GET", `/1.0/networks/${br}/peers/p1`, undefined],
      ["PUT", `/1.0/networks/${br}/peers/p1`, {}],
      ["PATCH", `/1.0/networks/${br}/peers/p1`, {}],
      ["DELETE", `/1.0/networks/${br}/peers/p1`, undefined],
    ] as const) {
      const r = await t.d.api(method, path, body);
      expect([r.status, r.body.error], `${method} ${path}`).toEqual(refused);
    }
    // Unknown and unmanaged networks: LXD's load error.
    for (const net of ["missing0", "lo"]) {
      const r = await t.d.api("GET", `/1.0/networks/${net}/peers`);
      expect([r.status, r.body.error]).toEqual([404, "Failed loading network: Network not found"]);
    }
    // POST decodes its body before looking at the network.
    const raw = await t.d.api("POST", "/1.0/networks/missing0/peers", "{bad" as unknown as object, { "content-type": "application/json" });
    expect([raw.status, raw.body.error]).toEqual([400, "invalid character 'b' looking for beginning of object key string"]);
    // PUT decodes only after the driver check.
    const put = await t.d.api("PUT", `/1.0/networks/${br}/peers/p1`, "{bad" as unknown as object);
    expect([put.status, put.body.error]).toEqual(refused);

    expect(fails("network", "peer", "list", br)).toContain('Network driver "bridge" does not support peering');
    expect(fails("network", "peer", "create", br, "p1", "default/x")).toContain('Network driver "bridge" does not support peering');
    expect(fails("network", "peer", "show", br, "p1")).toContain('Network driver "bridge" does not support peering');
    expect(fails("network", "peer", "delete", br, "p1")).toContain('Network driver "bridge" does not support peering');
  });
});
