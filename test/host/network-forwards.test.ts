// Network address forwards with the stock client: the upstream network_forward flow on the
// rules in the bridge's nftables table, and a forward from an unassigned address of our own
// bridge's subnet to a real container's port answering through DNAT, for the host and for a
// client in a namespace of ours routed through the host. NAT is off; traffic goes only between
// the host, our namespace and our container on our bridge.
import { connect } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { useNetworkDaemon } from "../helpers/network-daemon.js";
import { freeSubnet, makeNetns, must, nftChain, nftChainsOf, runId, sh, waitFor } from "../helpers/net.js";

const id = runId();
const t = useNetworkDaemon();
const { ok, fails, networks } = t;
const taken = new Set<number>();

function bridge(suffix: string): { name: string; n: number } {
  const name = `nf${id}${suffix}`;
  const n = freeSubnet(taken);
  networks.push(name);
  ok("network", "create", name, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none");
  return { name, n };
}

const chain = (net: string, c: string) => nftChain(c, net);
const lines = (net: string, c: string) => chain(net, c).stdout.split("\n").filter((l) => l.trim() !== "").length;

describe("network forwards through the stock client", () => {
  it("follow upstream's network_forward flow, rule for rule", async () => {
    const { name: net, n } = bridge("a");
    const base = `10.97.${n}`;
    const listen = `${base}.200`;
    ok("network", "forward", "create", net, listen);
    expect(chain(net, "fwdprert").code).not.toBe(0);
    expect(chain(net, "fwdpstrt").code).not.toBe(0);
    ok("network", "forward", "delete", net, listen);

    ok("network", "forward", "create", net, listen, `target_address=${base}.2`);
    expect(chain(net, "fwdprert").stdout).toContain(`ip daddr ${listen} dnat ip to ${base}.2`);
    expect(chain(net, "fwdout").stdout).toContain(`ip daddr ${listen} dnat ip to ${base}.2`);
    expect(chain(net, "fwdpstrt").stdout).toContain(`ip saddr ${base}.2 ip daddr ${base}.2 masquerade`);
    ok("network", "forward", "unset", net, listen, "target_address");
    expect(chain(net, "fwdprert").code).not.toBe(0);

    ok("network", "forward", "set", net, listen, `target_address=${base}.2`);
    fails("network", "forward", "port", "add", net, listen, "tcp", "80", `${base}.2`);
    fails("network", "forward", "port", "add", net, listen, "tcp", "80", `${base}.3`, "80-81");
    ok("network", "forward", "port", "add", net, listen, "tcp", "80-81", `${base}.3`);
    expect(chain(net, "fwdprert").stdout).toContain(`ip daddr ${listen} tcp dport 81 dnat ip to ${base}.3:81`);
    expect(chain(net, "fwdpstrt").stdout).toContain(`ip saddr ${base}.3 ip daddr ${base}.3 tcp dport 80 masquerade`);
    fails("network", "forward", "port", "add", net, listen, "tcp", "80", `${base}.3`, "90");
    ok("network", "forward", "port", "add", net, listen, "udp", "80", `${base}.3`, "90");
    expect(chain(net, "fwdout").stdout).toContain(`ip daddr ${listen} udp dport 80 dnat ip to ${base}.3:90`);
    fails("network", "forward", "port", "add", net, listen, "tcp", "82,83,84", `${base}.3`, "90,91");
    ok("network", "forward", "port", "add", net, listen, "tcp", "82-83,84", `${base}.3`, "90,91-92");
    expect(chain(net, "fwdprert").stdout).toContain(`ip daddr ${listen} tcp dport 84 dnat ip to ${base}.3:92`);
    // LXD's counts: 7 rules (+ 5 lines of nft's framing) per chain.
    expect([lines(net, "fwdprert"), lines(net, "fwdout"), lines(net, "fwdpstrt")]).toEqual([12, 12, 12]);
    fails("network", "forward", "port", "remove", net, listen, "tcp");
    ok("network", "forward", "port", "remove", net, listen, "tcp", "--force");
    expect([lines(net, "fwdprert"), lines(net, "fwdout"), lines(net, "fwdpstrt")]).toEqual([7, 7, 7]);

    const shown = JSON.parse(ok("query", `/1.0/networks/${net}/forwards/${listen}`));
    expect(shown).toEqual({
      description: "",
      config: { target_address: `${base}.2` },
      ports: [{ description: "", protocol: "udp", listen_port: "80", target_port: "90", target_address: `${base}.3` }],
      listen_address: listen,
      location: "none",
    });
    ok("network", "delete", net);
    expect(nftChainsOf(net)).toEqual([]);
    networks.splice(networks.indexOf(net), 1);
  });

  it("answers bad requests with LXD's errors and changes nothing", async () => {
    const { name: net, n } = bridge("b");
    const { n: other } = bridge("c");
    const l = `10.97.${n}.201`;
    ok("network", "forward", "create", net, l);
    let r = await t.d.api("POST", `/1.0/networks/${net}/forwards`, { listen_address: l });
    expect([r.status, r.body.error]).toEqual([409, "Failed creating forward: A forward for that listen address already exists"]);
    r = await t.d.api("POST", `/1.0/networks/${net}/forwards`, { listen_address: "foo" });
    expect([r.status, r.body.error]).toEqual([500, 'Failed creating forward: Failed parsing address forward listen address "foo": invalid CIDR address: foo/32']);
    r = await t.d.api("POST", `/1.0/networks/${net}/forwards`, { listen_address: `10.97.${n}.202`, config: { x: "y" } });
    expect([r.status, r.body.error]).toEqual([500, 'Failed creating forward: Invalid option "x"']);
    r = await t.d.api("POST", `/1.0/networks/${net}/forwards`, { listen_address: `10.97.${other}.5` });
    expect([r.status, r.body.error]).toEqual([500, `Failed creating forward: Forward listen address "10.97.${other}.5/32" overlaps with another network or NIC`]);
    r = await t.d.api("GET", `/1.0/networks/${net}/forwards/10.97.${n}.9`);
    expect([r.status, r.body.error]).toEqual([404, "Network forward not found"]);
    r = await t.d.api("DELETE", `/1.0/networks/${net}/forwards/10.97.${n}.9`);
    expect([r.status, r.body.error]).toEqual([404, "Failed deleting forward: Network forward not found"]);
    r = await t.d.api("GET", `/1.0/networks/nosuch${id}/forwards`);
    expect([r.status, r.body.error]).toEqual([404, "Failed loading network: Network not found"]);
    expect(JSON.parse(ok("query", `/1.0/networks/${net}/forwards`))).toEqual([`/1.0/networks/${net}/forwards/${l}`]);
  });
});

function httpGet(ip: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect({ host: ip, port, timeout: 3000 });
    let data = "";
    s.on("connect", () => s.write(`GET /index.html HTTP/1.0\r\nHost: ${ip}\r\n\r\n`));
    s.on("data", (c) => (data += c.toString()));
    s.on("end", () => resolve(data));
    s.on("error", () => resolve(undefined));
    s.on("timeout", () => {
      s.destroy();
      resolve(undefined);
    });
  });
}

describe("a forward to a container", () => {
  it("answers on the listen address through DNAT, and stops when removed", async () => {
    const { name: net, n } = bridge("d");
    const c = t.d.launch("fw", { network: net });
    const ip = await waitFor(() => /(\d+\.\d+\.\d+\.\d+) \(eth0\)/.exec(ok("list", "-c", "4", "-f", "csv", c))?.[1], 60_000, 500);
    ok("exec", c, "--", "sh", "-c", `mkdir -p /tmp/www && echo hello-${id} > /tmp/www/index.html && httpd -p 80 -h /tmp/www`);
    await waitFor(async () => (await httpGet(ip, 80))?.includes(`hello-${id}`), 10_000, 300);

    const listen = `10.97.${n}.250`;
    expect(await httpGet(listen, 8080)).toBeUndefined();
    ok("network", "forward", "create", net, listen);
    ok("network", "forward", "port", "add", net, listen, "tcp", "8080", ip, "80");
    expect(await httpGet(listen, 8080)).toContain(`hello-${id}`);

    // It survives a daemon restart (the bridge's table is rebuilt from the database).
    await t.d.restart();
    expect(await httpGet(listen, 8080)).toContain(`hello-${id}`);

    ok("network", "forward", "delete", net, listen);
    expect(await httpGet(listen, 8080)).toBeUndefined();
  });

  it("answers a client in a namespace of ours, routed to the listen address through the host", async () => {
    const { name: net, n } = bridge("e");
    const c = t.d.launch("fwns", { network: net });
    const ip = await waitFor(() => /(\d+\.\d+\.\d+\.\d+) \(eth0\)/.exec(ok("list", "-c", "4", "-f", "csv", c))?.[1], 60_000, 500);
    ok("exec", c, "--", "sh", "-c", `mkdir -p /tmp/www && echo ns-hello-${id} > /tmp/www/index.html && httpd -p 80 -h /tmp/www`);
    // Replies go back through the host, whatever route DHCP left the test image with.
    ok("exec", c, "--", "ip", "route", "replace", "default", "via", `10.97.${n}.1`);

    // The client's link: host end .1, namespace end .2 of its own subnet, and a route to the
    // bridge's subnet through the host.
    const m = freeSubnet(taken);
    const hostEnd = `nfv${id}`;
    Object.assign(clientNs, makeNetns(`nfns${id}`, hostEnd));
    must("ip", ["addr", "add", `10.97.${m}.1/24`, "dev", hostEnd]);
    must("ip", ["-n", `nfns${id}`, "addr", "add", `10.97.${m}.2/24`, "dev", "eth0"]);
    must("ip", ["-n", `nfns${id}`, "route", "add", `10.97.${n}.0/24`, "via", `10.97.${m}.1`]);
    const fetch = (to: string) =>
      clientNs.exec(["curl", "-s", "-m", "3", `http://${to}/index.html`]);

    const listen = `10.97.${n}.251`;
    expect(fetch(`${listen}:8080`).code).not.toBe(0);
    ok("network", "forward", "create", net, listen);
    ok("network", "forward", "port", "add", net, listen, "tcp", "8080", ip, "80");
    const got = await waitFor(() => {
      const r = fetch(`${listen}:8080`);
      return r.code === 0 ? r.stdout : undefined;
    }, 10_000, 500);
    expect(got).toContain(`ns-hello-${id}`);
    ok("network", "forward", "delete", net, listen);
    expect(fetch(`${listen}:8080`).code).not.toBe(0);
  });
});

const clientNs = { exec: (_args: string[]) => ({ code: -1, stdout: "", stderr: "" }), destroy: () => {} };
afterAll(() => clientNs.destroy());
