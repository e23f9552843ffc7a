// Device events as LXD 5.0.2's deviceNetlinkListener reads them: kernel uevents
// (NETLINK_KOBJECT_UEVENT) parsed into their fields. The source is an interface: the daemon
// listens to the kernel through the `nodelxd-uevent` helper (Node has no netlink sockets); a
// daemon pointed at a test hardware tree takes the same messages from a unix socket in it.
import { rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import type { Logger } from "pino";
import { HelperProcess, runHelper } from "../os/helper-process.js";
import { helperPath } from "../os/native.js";

export interface Uevent {
  /** The KEY=VALUE fields. */
  props: Record<string, string>;
  /** The message's fields as LXD keeps them for re-injection: "ACTION@DEVPATH" first, no SEQNUM. */
  parts: string[];
  /** A udev (libudev-prefixed) message rather than the kernel's own. */
  udev: boolean;
}

/** One netlink message (NUL-separated fields; udev's carry a 40-byte "libudev" header). */
export function parseUevent(buf: Buffer): Uevent | undefined {
  let data = buf;
  let udev = false;
  if (data.subarray(0, 7).toString("latin1") === "libudev") {
    if (data.length <= 40) return undefined;
    udev = true;
    data = data.subarray(40, data.length - 1);
  }
  const fields = data.toString("utf8").split("\0");
  if (fields.at(-1) === "") fields.pop();
  const parts = fields.filter((f) => !f.startsWith("SEQNUM="));
  const props: Record<string, string> = {};
  for (const f of parts) {
    const i = f.indexOf("=");
    if (i > 0) props[f.slice(0, i)] = f.slice(i + 1);
  }
  if (!props.ACTION) return undefined;
  // udev leaves out the kernel's "ACTION@DEVPATH" line, which listeners expect first.
  if (udev || !parts[0]?.includes("@")) parts.unshift(`${props.ACTION}@${props.DEVPATH ?? ""}`);
  return { props, parts, udev };
}

export interface UeventSource {
  /** Begin delivering events; resolves once listening. */
  start(onEvent: (e: Uevent) => void): Promise<void>;
  stop(): Promise<void>;
}

/** Split the helper's stream of [u32 LE length][message] records. */
export function frameReader(onRecord: (b: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 4) {
      const len = pending.readUInt32LE(0);
      if (pending.length < 4 + len) break;
      onRecord(pending.subarray(4, 4 + len));
      pending = pending.subarray(4 + len);
    }
  };
}

/** Kernel uevents through `nodelxd-uevent listen`, restarted if it dies. */
export class NetlinkUevents implements UeventSource {
  private proc?: HelperProcess;
  private stopping = false;

  constructor(private readonly log: Logger) {}

  start(onEvent: (e: Uevent) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      let bound = false;
      const p = new HelperProcess(helperPath("nodelxd-uevent"), "nodelxd-uevent", ["listen"], ["ignore", "pipe", "pipe"]);
      this.proc = p;
      let stderr = "";
      p.stderr?.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
      p.stdout?.on(
        "data",
        frameReader((rec) => {
          if (rec.length === 0) {
            bound = true;
            return resolve();
          }
          const e = parseUevent(rec);
          if (e) onEvent(e);
        }),
      );
      void p.exited.then(({ code, signal }) => {
        if (!bound) return reject(new Error(`Couldn't setup netlink listener: ${stderr.trim() || `exit ${code ?? signal}`}`));
        if (this.stopping) return;
        this.log.warn({ code, signal, stderr: stderr.trim() }, "uevent listener ended; restarting");
        setTimeout(() => void this.start(onEvent).catch((err) => this.log.error({ err }, "uevent listener restart failed")), 1000).unref();
      });
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.proc?.kill("SIGTERM");
    await this.proc?.exited;
  }
}

/**
 * The same messages from a unix stream socket, one message per connection: the source of a
 * daemon pointed at a test hardware tree (NODELXD_HARDWARE_ROOT), whose devices the kernel
 * does not know.
 */
export class SocketUevents implements UeventSource {
  private server?: Server;

  constructor(private readonly path: string) {}

  start(onEvent: (e: Uevent) => void): Promise<void> {
    rmSync(this.path, { force: true });
    const server = createServer((conn) => {
      const chunks: Buffer[] = [];
      conn.on("data", (c: Buffer) => chunks.push(c));
      conn.on("error", () => {});
      conn.on("end", () => {
        const e = parseUevent(Buffer.concat(chunks));
        if (e) onEvent(e);
        conn.end();
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.path, () => resolve());
    });
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    rmSync(this.path, { force: true });
  }
}

/** LXD's forkuevent inject: send a uevent into the network namespace of process `pid`. */
export async function injectUevent(pid: number, parts: string[]): Promise<void> {
  if (parts.length === 0) return;
  const r = await runHelper(helperPath("nodelxd-uevent"), "nodelxd-uevent", ["inject", String(pid), ...parts]);
  if (r.exitCode !== 0) throw new Error(`Failed to inject uevent: ${r.stderr.trim()}`);
}
