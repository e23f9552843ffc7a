// Network ACLs with the stock client (the upstream network_acl flow), and an ACL on a real
// bridge deciding which host-to-container TCP connections get through. NAT is off; traffic only
// goes between the host and our own container on our own bridge.
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { useNetworkDaemon } from "../helpers/network-daemon.js";
import { freeSubnet, nftChain, runId, sh, waitFor } from "../helpers/net.js";

const id = runId();
const t = useNetworkDaemon();
const { ok, fails, networks } = t;

function lxcInput(input: string, ...args: string[]): void {
  const r = sh("lxc", args, { input, env: { ...process.env, LXD_DIR: t.d.dir } });
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
}

describe("network ACLs through the stock client", () => {
  it("create, list and delete, namespaced by projects with features.networks", () => {
    expect(fails("network", "acl", "create", "192.168.1.1")).toContain("Name must not start with a number");
    ok("network", "acl", "create", "testacl");
    ok("project", "create", `p${id}`, "-c", "features.networks=true");
    ok("project", "create", `q${id}`, "-c", "features.networks=false");
    ok("network", "acl", "create", "testacl", "--project", `p${id}`);
    expect(ok("project", "show", `p${id}`)).toContain("/1.0/network-acls/testacl?project=");
    expect(fails("network", "acl", "create", "testacl", "--project", `q${id}`)).toContain("The network ACL already exists");
    expect(fails("project", "delete", `p${id}`)).toContain("Only empty projects can be removed");
    expect(ok("network", "acl", "ls")).toContain("testacl");
    expect(ok("network", "acl", "ls", "--project", `p${id}`)).toContain("testacl");
    ok("network", "acl", "delete", "testacl");
    ok("network", "acl", "delete", "testacl", "--project", `p${id}`);
    expect(ok("network", "acl", "ls")).not.toContain("testacl");
    ok("project", "delete", `p${id}`);
    ok("project", "delete", `q${id}`);
  });

  it("from stdin, PATCH, edit, rule add/remove, rename and config as upstream's suite drives them", () => {
    lxcInput(
      `description: Test ACL
egress: []
ingress:
- action: allow
  source: 192.168.1.1/32
  destination: 192.168.1.2/32
  protocol: tcp
  source_port: ""
  destination_port: "22"
  icmp_type: ""
  icmp_code: ""
  description: ""
  state: enabled
config:
  user.mykey: foo
`,
      "network",
      "acl",
      "create",
      "testacl",
    );
    const shown = ok("network", "acl", "show", "testacl");
    for (const s of ["description: Test ACL", "action: allow", "source: 192.168.1.1/32", 'destination_port: "22"', "user.mykey: foo"]) expect(shown).toContain(s);
    // The omitted empty fields are not shown, as LXD's omitempty.
    expect(shown).not.toContain("icmp_type");

    ok("query", "-X", "PATCH", "-d", JSON.stringify({ config: { "user.myotherkey": "bah" } }), "/1.0/network-acls/testacl");
    const patched = ok("network", "acl", "show", "testacl");
    for (const s of ["user.mykey: foo", "user.myotherkey: bah", 'description: ""', "ingress: []", "egress: []"]) expect(patched).toContain(s);

    const bad: [string[], string][] = [
      [["outbound"], ""],
      [["ingress", "invalidfield=foo"], ""],
      [["ingress", "action=accept"], "Action must be one of"],
      [["ingress", "action=allow", "state=foo"], "State must be one of"],
      [["ingress", "action=allow", "source=foo"], 'Invalid subject "foo"'],
      [["ingress", "action=allow", "destination=foo"], 'Invalid subject "foo"'],
      [["ingress", "action=allow", "protocol=tcp", "source_port=foo"], "Invalid port number"],
      [["ingress", "action=allow", "protocol=foo"], "Protocol must be one of"],
      [["ingress", "action=allow", "protocol=udp", "icmp_code=1"], "ICMP code cannot be used with non-ICMP protocol"],
      [["ingress", "action=allow", "protocol=icmp4", "icmp_code=256"], "Must be between 0 and 255"],
    ];
    for (const [args, msg] of bad) expect(fails("network", "acl", "rule", "add", "testacl", ...args)).toContain(msg);
    expect(ok("network", "acl", "show", "testacl")).toContain("ingress: []");

    const rule = ["ingress", "action=allow", "source=192.168.1.2/32", "protocol=tcp", "destination=192.168.1.1-192.168.1.3"];
    ok("network", "acl", "rule", "add", "testacl", ...rule, "destination_port=22, 2222-2223");
    expect(fails("network", "acl", "rule", "add", "testacl", ...rule, "destination_port=22,2222-2223")).toContain("Duplicate of ingress rule");
    expect(ok("network", "acl", "show", "testacl")).toContain("destination: 192.168.1.1-192.168.1.3");
    ok("network", "acl", "rule", "add", "testacl", "ingress", "action=allow", "source=192.168.1.3/32", "protocol=tcp", "description=removal rule test");
    fails("network", "acl", "rule", "remove", "testacl", "ingress");
    ok("network", "acl", "rule", "remove", "testacl", "ingress", "description=removal rule test");
    fails("network", "acl", "rule", "remove", "testacl", "ingress", "description=removal rule test");
    ok("network", "acl", "rule", "remove", "testacl", "ingress", "--force");
    expect(ok("network", "acl", "show", "testacl")).toContain("ingress: []");

    expect(fails("network", "acl", "rename", "testacl", "192.168.1.1")).toContain("Name must not start with a number");
    ok("network", "acl", "rename", "testacl", "testacl2");
    ok("network", "acl", "show", "testacl2");
    ok("network", "acl", "set", "testacl2", "user.somekey", "foo");
    expect(ok("network", "acl", "get", "testacl2", "user.somekey").trim()).toBe("foo");
    expect(fails("network", "acl", "set", "testacl2", "non.userkey", "x")).toContain('Invalid config option "non.userkey"');
    ok("network", "acl", "unset", "testacl2", "user.somekey");
    expect(ok("network", "acl", "get", "testacl2", "user.somekey").trim()).toBe("");
    ok("network", "acl", "delete", "testacl2");
    expect(fails("network", "acl", "show", "testacl2")).toContain("Network ACL not found");
  });

  it("answers the API with LXD's shapes, ETags and lifecycle events", async () => {
    const r = await t.d.api("POST", "/1.0/network-acls", { name: "shape", ingress: [{ action: "drop", state: "enabled", protocol: "icmp4" }] });
    expect(r.status).toBe(201);
    expect(r.headers.location).toBe("/1.0/network-acls/shape");
    const g = await t.d.api("GET", "/1.0/network-acls/shape");
    expect(g.body.metadata).toEqual({ name: "shape", description: "", ingress: [{ action: "drop", protocol: "icmp4", state: "enabled" }], egress: [], config: {}, used_by: [] });
    const stale = await t.d.api("PUT", "/1.0/network-acls/shape", { ingress: [] }, { "If-Match": '"nope"' });
    expect(stale.status).toBe(412);
    expect((await t.d.api("GET", "/1.0/network-acls")).body.metadata).toContain("/1.0/network-acls/shape");
    expect((await t.d.api("POST", "/1.0/network-acls", { name: "x", ingress: [{ action: 1 }] })).status).toBe(400);
    expect((await t.d.api("DELETE", "/1.0/network-acls/shape")).status).toBe(200);
    expect((await t.d.api("GET", "/1.0/network-acls/shape")).status).toBe(404);
  });
});

/** Resolves true when a TCP connection to ip:port is accepted, false when refused or timed out. */
function tcpOpen(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: ip, port, timeout: 3000 });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

describe("an ACL on a bridge", () => {
  it("lets through only what it allows, is refused for deletion while in use, and goes away with the network", async () => {
    const n = freeSubnet();
    const br = `na${id}`;
    networks.push(br);
    ok("network", "create", br, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none");
    const c = t.d.launch("web", { network: br });
    const ip = await waitFor(() => /(\d+\.\d+\.\d+\.\d+) \(eth0\)/.exec(ok("list", "-c", "4", "-f", "csv", c))?.[1], 60_000, 500);
    expect(ip.startsWith(`10.97.${n}.`)).toBe(true);
    ok("exec", c, "--", "sh", "-c", "mkdir -p /tmp/www && httpd -p 22 -h /tmp/www && httpd -p 80 -h /tmp/www");
    await waitFor(async () => (await tcpOpen(ip, 22)) && (await tcpOpen(ip, 80)), 10_000, 300);

    fails("network", "set", br, "security.acls=missing");
    ok("network", "acl", "create", "ssh-only");
    ok("network", "acl", "rule", "add", "ssh-only", "ingress", "action=allow", "protocol=tcp", "destination_port=22");
    ok("network", "set", br, "security.acls=ssh-only");
    expect(await tcpOpen(ip, 22)).toBe(true);
    expect(await tcpOpen(ip, 80)).toBe(false);
    expect(nftChain("acl", br).stdout).toContain("tcp dport 22 accept");

    // Changing the ACL re-applies it to the network that uses it.
    ok("network", "acl", "rule", "add", "ssh-only", "ingress", "action=allow", "protocol=tcp", "destination_port=80");
    expect(await tcpOpen(ip, 80)).toBe(true);
    ok("network", "acl", "rule", "remove", "ssh-only", "ingress", "destination_port=80");
    expect(await tcpOpen(ip, 80)).toBe(false);

    expect(JSON.parse(ok("query", "/1.0/network-acls/ssh-only")).used_by).toEqual([`/1.0/networks/${br}`]);
    expect(fails("network", "acl", "delete", "ssh-only")).toContain("Cannot delete an ACL that is in use");
    expect(fails("network", "acl", "rename", "ssh-only", "other")).toContain("Cannot rename an ACL that is in use");

    // The default ingress action decides what no rule matched.
    ok("network", "set", br, "security.acls.default.ingress.action=allow");
    expect(await tcpOpen(ip, 80)).toBe(true);
    ok("network", "unset", br, "security.acls.default.ingress.action");
    ok("network", "unset", br, "security.acls");
    expect(await tcpOpen(ip, 80)).toBe(true);
    expect(nftChain("acl", br).code).not.toBe(0);
    ok("network", "acl", "delete", "ssh-only");
  });
});

// This host's bridges hand bridged IPv4 to the inet hooks (br_netfilter with
// bridge-nf-call-iptables=1), so LXD's forward-hook ACL chain also sees traffic between two
// instances on one bridge, as real LXD 5.0.2's rules do on such a host.
const bridgedToInet = () => {
  try {
    return readFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "utf8").trim() === "1";
  } catch {
    return false;
  }
};

describe("an ACL between two containers on one bridge", () => {
  it.skipIf(!bridgedToInet())("allows tcp/22, rejects the rest, and show-log lists the logged packets (kernel does not pass bridged traffic to inet hooks)", async () => {
    const n = freeSubnet();
    const br = `nb${id}`;
    networks.push(br);
    ok("network", "create", br, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none");
    const client = t.d.launch("cli", { network: br });
    const server = t.d.launch("srv", { network: br });
    const ipOf = (c: string) => waitFor(() => /(\d+\.\d+\.\d+\.\d+) \(eth0\)/.exec(ok("list", "-c", "4", "-f", "csv", c))?.[1], 60_000, 500);
    const [from, to] = [await ipOf(client), await ipOf(server)];
    ok("exec", server, "--", "sh", "-c", "mkdir -p /tmp/www && httpd -p 22 -h /tmp/www && httpd -p 80 -h /tmp/www");
    const connects = (port: number) => sh("lxc", ["exec", client, "--", "sh", "-c", `echo | nc -w 3 ${to} ${port}`], { env: { ...process.env, LXD_DIR: t.d.dir } }).code === 0;
    await waitFor(() => connects(22) && connects(80), 10_000, 300);

    ok("network", "acl", "create", "ssh22");
    ok("network", "acl", "rule", "add", "ssh22", "ingress", "action=allow", "protocol=tcp", "destination_port=22", "state=logged");
    ok("network", "acl", "rule", "add", "ssh22", "egress", "action=allow", "protocol=tcp", "destination_port=22");
    ok("network", "set", br, "security.acls=ssh22");
    expect(connects(22)).toBe(true);
    expect(connects(80)).toBe(false);

    const entries = ok("network", "acl", "show-log", "ssh22")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Record<string, string>);
    expect(entries).toContainEqual(expect.objectContaining({ proto: "tcp", src: from, dst: to, dst_port: "22", action: "allow" }));
    expect(entries.some((e) => e.dst_port === "80")).toBe(false);

    ok("network", "unset", br, "security.acls");
    expect(connects(80)).toBe(true);
    ok("network", "acl", "delete", "ssh22");
  });
});
