// The container console through the daemon: the stock `lxc console` and a raw websocket client.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TestDaemon } from "../helpers/daemon.js";
import { rawContainer, type RawContainer } from "../helpers/raw-container.js";
import { clientEnv, opSocket, startRawDaemon } from "../helpers/raw-daemon.js";

let c: RawContainer;
let d: TestDaemon;

beforeAll(async () => {
  c = rawContainer();
  c.start();
  d = await startRawDaemon(c);
});

afterAll(async () => {
  await d?.stop();
  c?.destroy();
});

test("lxc console attaches, a typed line reaches the console shell, ctrl-a q detaches", () => {
  // The client looks for ctrl-a and q at the start of separate reads.
  const feed = `sleep 1; printf 'echo console-$((6*7))\\r'; sleep 1; printf '\\001'; sleep 0.5; printf q`;
  const r = spawnSync("sh", ["-c", `(${feed}) | script -qec 'lxc console ${c.name}' /dev/null`], { env: clientEnv(d), encoding: "utf8", timeout: 30_000 });
  expect(r.stdout).toContain("console-42");
  expect(r.status).toBe(0);
});

test("raw websocket: fds 0 and control, output, close ends the operation", async () => {
  const r = await d.api("POST", `/1.0/instances/${c.name}/console`, { width: 80, height: 24 });
  expect(r.status).toBe(202);
  const op = r.body.metadata;
  expect(op.description).toBe("Showing console");
  expect(Object.keys(op.metadata.fds).sort()).toEqual(["0", "control"]);
  const control = await opSocket(d, op.id, op.metadata.fds.control);
  const ws = await opSocket(d, op.id, op.metadata.fds["0"]);
  let text = "";
  ws.on("message", (data) => (text += data.toString()));
  await new Promise((res) => setTimeout(res, 500));
  ws.send(Buffer.from("echo raw-$((2*3))\r"));
  for (let i = 0; i < 100 && !text.includes("raw-6"); i++) await new Promise((res) => setTimeout(res, 50));
  expect(text).toContain("raw-6");
  ws.close();
  control.close();
  const done = await d.api("GET", `/1.0/operations/${op.id}/wait?timeout=10`);
  expect(done.body.metadata.status).toBe("Success");
});

test("console types: vga is for VMs, unknown types refused", async () => {
  const vga = await d.api("POST", `/1.0/instances/${c.name}/console`, { type: "vga" });
  expect(vga.status).toBe(400);
  expect(vga.body.error).toBe("VGA console is only supported by virtual machines");
  const bogus = await d.api("POST", `/1.0/instances/${c.name}/console`, { type: "bogus" });
  expect(bogus.body.error).toBe('Unknown console type "bogus"');
});
