// Image push and relay between servers (`lxc image copy a:img b: --mode push|relay`) and
// launches across servers (`lxc launch a:img b:c`), with real LXD 5.0.2 as the other server in
// both directions. One client configuration holds both servers as HTTPS remotes (127.0.0.7x),
// so the stock client drives every copy as a user would.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";

let d: TestDaemon;
let ref: ReferenceLxd;
let refDir: string;
let tmp: string;
const port = () => 20000 + Math.floor(Math.random() * 30000);
const refAddr = `127.0.0.71:${port()}`;
const ourAddr = `127.0.0.72:${port()}`;
const tag = `i2p${process.pid.toString(36)}`;
const ours: string[] = [];
const theirs: string[] = [];
let fp = "";

type Out = { code: number; stdout: string; stderr: string };
const run = (args: string[], env: Record<string, string>): Promise<Out> =>
  new Promise((resolve) => {
    const p = spawn("lxc", args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (c) => (stdout += c));
    p.stderr.on("data", (c) => (stderr += c));
    const t = setTimeout(() => p.kill("SIGKILL"), 150_000);
    p.on("close", (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
/** The stock client with both servers as remotes: n (nodelxd) and r (real LXD). */
const lxc = (...args: string[]) => run(args, { LXD_DIR: d.dir, LXD_CONF: join(tmp, "conf") });
const lxcOurs = (...args: string[]) => run(args, { LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" });
const lxcRef = (...args: string[]) => run(args, { LXD_DIR: refDir, LXD_CONF: join(tmp, "refconf") });
const must = async (p: Promise<Out>) => {
  const r = await p;
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
};
const image = async (remote: string, f = fp) => JSON.parse(await must(lxc("query", `${remote}:/1.0/images/${f}`)));
const hasImage = async (remote: string, f = fp) => (await lxc("query", `${remote}:/1.0/images/${f}`)).code === 0;
const aliasTarget = async (remote: string, name: string) => {
  const r = await lxc("query", `${remote}:/1.0/images/aliases/${name}`);
  return r.code === 0 ? JSON.parse(r.stdout).target : undefined;
};

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-images2-push-");
  ref = await startReferenceLxd();
  refDir = ref.socket.replace(/\/unix\.socket$/, "");
  d = await startDaemon();
  for (const l of [lxcOurs, lxcRef]) {
    await must(l("storage", "create", "default", "dir"));
    await must(l("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default"));
  }
  await must(lxcOurs("image", "import", busyboxImage(), "--alias", "busybox"));
  fp = JSON.parse(await must(lxcOurs("query", "/1.0/images/aliases/busybox"))).target;
  await must(lxcRef("config", "set", "core.https_address", refAddr));
  await must(lxcRef("config", "set", "core.trust_password", "push-pw"));
  await must(lxcOurs("config", "set", "core.https_address", ourAddr));
  await must(lxcOurs("config", "set", "core.trust_password", "push-pw"));
  await must(lxc("remote", "add", "n", `https://${ourAddr}`, "--accept-certificate", "--password", "push-pw"));
  await must(lxc("remote", "add", "r", `https://${refAddr}`, "--accept-certificate", "--password", "push-pw"));
}, 240_000);

afterAll(async () => {
  for (const n of ours) await lxcOurs("delete", "-f", n);
  for (const n of theirs) await lxcRef("delete", "-f", n);
  await d?.stop();
  await ref?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 120_000);

describe("lxc image copy --mode push", () => {
  it("nodelxd pushes a private image to real LXD: the token's fields apply, the aliases only when asked", async () => {
    await must(lxc("image", "alias", "create", "n:extra", fp));
    const r = await lxc("image", "copy", "n:busybox", "r:", "--mode", "push");
    expect(r.code, r.stderr).toBe(0);
    const img = await image("r");
    expect(img).toMatchObject({ fingerprint: fp, public: false, cached: false, size: (await image("n")).size });
    expect(await aliasTarget("r", "busybox")).toBeUndefined();
    // The push token was used up; nothing is left running on the target.
    const ops = JSON.parse(await must(lxc("query", "r:/1.0/operations?recursion=1")));
    expect([...(ops.running ?? [])]).toEqual([]);
    await must(lxc("image", "delete", `r:${fp}`));

    const p = await lxc("image", "copy", "n:busybox", "r:", "--mode", "push", "--copy-aliases", "--public", "--alias", "more");
    expect(p.code, p.stderr).toBe(0);
    expect((await image("r")).public).toBe(true);
    for (const a of ["busybox", "extra", "more"]) expect(await aliasTarget("r", a)).toBe(fp);
    await must(lxc("image", "alias", "delete", "n:extra"));
  }, 120_000);

  it("real LXD pushes to nodelxd (an untrusted upload admitted by the token) and lxc launch n:busybox works from it", async () => {
    await must(lxc("image", "delete", `n:${fp}`));
    const r = await lxc("image", "copy", `r:${fp}`, "n:", "--mode", "push", "--copy-aliases");
    expect(r.code, r.stderr).toBe(0);
    // The real LXD image was public (pushed with --public above); the push copies properties, not public.
    const img = await image("n");
    expect(img).toMatchObject({ fingerprint: fp, public: false, cached: false });
    expect(img.properties).toEqual((await image("r")).properties);
    for (const a of ["busybox", "extra", "more"]) expect(await aliasTarget("n", a)).toBe(fp);
    const c = `${tag}-a`;
    ours.push(c);
    const l = await lxc("launch", "n:busybox", `n:${c}`);
    expect(l.code, l.stderr).toBe(0);
  }, 120_000);

  it("a push without a valid token is refused: untrusted uploads, wrong secrets, a used token", async () => {
    const token = await d.api("POST", "/1.0/images", { source: { mode: "push", fingerprint: fp } });
    expect(token.status).toBe(202);
    expect(token.body.metadata).toMatchObject({ class: "token", description: "Image download token", resources: { images: [`/1.0/images/${fp}`] } });
    const secret = token.body.metadata.metadata.secret;
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    const untrusted = (headers: Record<string, string>) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        import("node:https").then(({ request }) => {
          const req = request(`https://${ourAddr}/1.0/images`, { method: "POST", rejectUnauthorized: false, headers: { "content-type": "application/octet-stream", ...headers } }, (res) => {
            let t = "";
            res.on("data", (c) => (t += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(t) }));
          });
          req.on("error", reject);
          req.end("not an image");
        });
      });
    expect(await untrusted({})).toMatchObject({ status: 403, body: { type: "error", error: "not authorized", error_code: 403 } });
    expect((await untrusted({ "x-lxd-fingerprint": fp, "x-lxd-secret": "0".repeat(64) })).status).toBe(403);
    // A right secret for another fingerprint opens nothing either.
    expect((await untrusted({ "x-lxd-fingerprint": "a".repeat(64), "x-lxd-secret": secret })).status).toBe(403);
    // The right one is admitted once (the body then fails as an image), and used up.
    const first = await untrusted({ "x-lxd-fingerprint": fp, "x-lxd-secret": secret });
    expect(first.status).toBe(202);
    expect(first.body.metadata.metadata.secret).toMatch(/^[0-9a-f]{64}$/);
    expect((await d.api("GET", token.body.operation)).body.metadata.status).toBe("Cancelled");
    await new Promise((r) => setTimeout(r, 5500));
    expect((await untrusted({ "x-lxd-fingerprint": fp, "x-lxd-secret": secret })).status).toBe(403);
    // An untrusted client cannot make tokens.
    const res = await untrusted({ "content-type": "application/json" });
    expect(res.status).toBe(403);
  }, 60_000);

  it("a push to a target whose certificate does not match fails before sending anything", async () => {
    const ourCert = JSON.parse(await must(lxcOurs("query", "/1.0"))).environment.certificate;
    const r = await d.api("POST", `/1.0/images/${fp}/export`, { target: `https://${refAddr}`, certificate: ourCert, secret: "x" });
    expect(r.status).toBe(202);
    const op = (await d.api("GET", `${r.body.operation}/wait?timeout=60`)).body.metadata;
    expect(op.status).toBe("Failure");
    expect(op.err).toMatch(/^Failed to connect to the target: /);
    const missing = await d.api("POST", `/1.0/images/${"f".repeat(64)}/export`, { target: `https://${refAddr}` });
    expect(missing.status).toBe(404);
  });
});

describe("lxc image copy --mode relay, and launches across servers", () => {
  it("relay both ways keeps the fingerprint; public and aliases as asked", async () => {
    await must(lxc("image", "delete", `r:${fp}`));
    const r = await lxc("image", "copy", "n:busybox", "r:", "--mode", "relay");
    expect(r.code, r.stderr).toBe(0);
    expect(await image("r")).toMatchObject({ fingerprint: fp, public: false });
    expect(await aliasTarget("r", "busybox")).toBeUndefined();
    await must(lxc("image", "delete", `n:${fp}`));
    const back = await lxc("image", "copy", `r:${fp}`, "n:", "--mode", "relay", "--public", "--alias", "relayed");
    expect(back.code, back.stderr).toBe(0);
    expect(await image("n")).toMatchObject({ fingerprint: fp, public: true });
    expect(await aliasTarget("n", "relayed")).toBe(fp);
  }, 120_000);

  it("lxc launch n:relayed r:c (real LXD pulls from nodelxd) and lxc launch r:<fp> n:c (nodelxd pulls from real LXD)", async () => {
    await must(lxc("image", "delete", `r:${fp}`));
    const c1 = `${tag}-r1`;
    theirs.push(c1);
    const a = await lxc("launch", "n:relayed", `r:${c1}`);
    expect(a.code, a.stderr).toBe(0);
    expect(await image("r")).toMatchObject({ fingerprint: fp, cached: true });
    expect((await must(lxc("exec", `r:${c1}`, "--", "cat", "/etc/hostname"))).trim()).toBe(c1);

    for (const c of ours.splice(0)) await must(lxc("delete", "-f", `n:${c}`));
    await must(lxc("image", "delete", `n:${fp}`));
    const c2 = `${tag}-n1`;
    ours.push(c2);
    const b = await lxc("launch", `r:${fp}`, `n:${c2}`);
    expect(b.code, b.stderr).toBe(0);
    expect(await image("n")).toMatchObject({ fingerprint: fp, cached: true });
    expect((await must(lxc("exec", `n:${c2}`, "--", "cat", "/etc/hostname"))).trim()).toBe(c2);
    expect(await hasImage("n")).toBe(true);
  }, 180_000);
});
