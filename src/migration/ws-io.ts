// Migration websockets as LXD frames them (shared.WebsocketIO): data travels in binary
// messages; an empty text message ends one stream (the "barrier"), after which the next
// stream begins on the same socket. The control channel carries one protobuf per message.
import { X509Certificate } from "node:crypto";
import { Readable, type Writable } from "node:stream";
import { createRequire } from "node:module";
import type { RawData, WebSocket } from "ws";

type Item = { data: Buffer } | { barrier: true } | { closed: Error };

/** Above this many queued bytes the socket is paused until the reader catches up. */
const HIGH_WATER = 8 << 20;
/** Bytes handed to the websocket and not yet written out before the sender reads more. */
const SEND_WINDOW = 4 << 20;

export class MigrationChannel {
  private readonly items: Item[] = [];
  private queued = 0;
  private waiters: (() => void)[] = [];
  private closedWith?: Error;

  constructor(
    readonly ws: WebSocket,
    readonly name: string,
  ) {
    ws.on("message", (data: RawData, isBinary: boolean) => {
      // ws hands a Buffer (binaryType "nodebuffer"); Buffer.from() of it would copy every chunk.
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (!isBinary) this.push({ barrier: true });
      else {
        this.queued += buf.length;
        this.push({ data: buf });
        if (this.queued > HIGH_WATER) ws.pause();
      }
    });
    const closed = (why: string) => {
      if (this.closedWith) return;
      this.closedWith = new Error(why);
      this.push({ closed: this.closedWith });
    };
    ws.on("close", (code, reason) => closed(`${name} websocket closed (${code}${reason.length ? `: ${reason.toString()}` : ""})`));
    ws.on("error", (e) => closed(`${name} websocket failed: ${e.message}`));
  }

  private push(item: Item): void {
    this.items.push(item);
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  private async shift(): Promise<Item> {
    while (this.items.length === 0) await new Promise<void>((r) => this.waiters.push(r));
    const item = this.items[0];
    if ("closed" in item) return item; // stays: every later read sees the close too
    this.items.shift();
    if ("data" in item) {
      this.queued -= item.data.length;
      if (this.queued <= HIGH_WATER / 2 && this.ws.isPaused) this.ws.resume();
    }
    return item;
  }

  /** The next binary message (control channel); a barrier or a close is an error. */
  async recvMessage(): Promise<Buffer> {
    const item = await this.shift();
    if ("closed" in item) throw item.closed;
    if ("barrier" in item) throw new Error(`Only binary messages allowed on the ${this.name} channel`);
    return item.data;
  }

  send(data: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== this.ws.OPEN) return reject(this.closedWith ?? new Error(`${this.name} websocket is not open`));
      this.ws.send(data, { binary: typeof data !== "string" }, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** End the current outgoing stream (the barrier). */
  endStream(): Promise<void> {
    return this.send("");
  }

  /**
   * Send `data` as one stream, then its barrier. Writes are pipelined up to SEND_WINDOW bytes:
   * waiting for each chunk's write before reading the next made every 64 KiB pay a full
   * event-loop round trip, which on a busy host held a transfer to a few MiB/s.
   */
  async sendStream(data: Readable, progress?: (bytes: number) => void): Promise<void> {
    let n = 0;
    let pending = 0;
    const inFlight: { size: number; done: Promise<void> }[] = [];
    for await (const chunk of data) {
      const buf = chunk as Buffer;
      n += buf.length;
      progress?.(n);
      const done = this.send(buf);
      // Handled here so a failure is not "unhandled" while it waits in line; awaiting it still throws.
      done.catch(() => {});
      inFlight.push({ size: buf.length, done });
      pending += buf.length;
      while (pending > SEND_WINDOW) {
        const oldest = inFlight.shift()!;
        await oldest.done;
        pending -= oldest.size;
      }
    }
    for (const f of inFlight) await f.done;
    await this.endStream();
  }

  /** One incoming stream, up to its barrier, as a Readable (errors if the socket closes first). */
  readStream(limit = Infinity): Readable {
    let total = 0;
    const shift = () => this.shift();
    const name = this.name;
    return new Readable({
      read() {
        shift().then(
          (item) => {
            if ("closed" in item) return void this.destroy(item.closed);
            if ("barrier" in item) return void this.push(null);
            total += item.data.length;
            if (total > limit) return void this.destroy(new Error(`${name} stream is larger than ${limit} bytes`));
            this.push(item.data);
          },
          (e) => this.destroy(e as Error),
        );
      },
    });
  }

  /**
   * Copy one incoming stream, up to its barrier, into `to`, without a Readable in between:
   * whatever has arrived is written in one batch (one writev under cork) and the next batch
   * waits for `to` to drain. Per 64 KiB message the Readable path cost a promise, a push and,
   * when several were queued, a Buffer.concat copy; single writes woke the reader per chunk.
   * If `to` fails or closes, the rest of the stream is still read (and dropped) to its barrier;
   * a close of the websocket first rejects.
   */
  async pipeStreamTo(to: Writable): Promise<void> {
    let broken = false;
    // Stays: an EPIPE reported after the stream ended must not be an unhandled error.
    to.on("error", () => (broken = true));
    for (;;) {
      const first = await this.shift();
      if ("closed" in first) throw first.closed;
      if ("barrier" in first) break;
      const batch = [first.data];
      let ended = false;
      while (this.items.length > 0 && !("closed" in this.items[0])) {
        const item = await this.shift();
        if ("barrier" in item) {
          ended = true;
          break;
        }
        if ("data" in item) batch.push(item.data);
      }
      if (!broken && !to.destroyed) {
        let full = false;
        to.cork();
        for (const b of batch) full = !to.write(b) || full;
        to.uncork();
        if (full && !to.destroyed) await waitDrain(to);
      }
      if (ended) break;
    }
    if (!broken && !to.destroyed) to.end();
  }

  /** A whole small stream (the index header), bounded. */
  async readAll(limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of this.readStream(limit)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  close(): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(1000);
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Until `to` drains or closes (the listener not taken is removed: no build-up over a long stream). */
function waitDrain(to: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      to.off("drain", done);
      to.off("close", done);
      resolve();
    };
    to.on("drain", done);
    to.on("close", done);
  });
}

/**
 * Connect to a peer operation's websocket (wss://ADDR/1.0/operations/ID/websocket?secret=S).
 * The peer must present exactly `certificatePem` (its server certificate, as LXD pins it).
 */
export function connectPeer(operationUrl: string, secret: string, certificatePem: string, name: string, signal?: AbortSignal): Promise<MigrationChannel> {
  const url = new URL(operationUrl);
  if (url.protocol !== "https:") throw new Error(`Invalid operation URL "${operationUrl}"`);
  if (!/^\/1\.0\/operations\/[A-Za-z0-9-]+$/.test(url.pathname)) throw new Error(`Invalid operation URL "${operationUrl}"`);
  const wsUrl = `wss://${url.host}${url.pathname}/websocket?secret=${encodeURIComponent(secret)}`;
  const pinned = certificatePem ? new X509Certificate(certificatePem).raw : undefined;
  return new Promise((resolve, reject) => {
    const { WebSocket } = createRequire(import.meta.url)("ws") as typeof import("ws");
  const ws = new WebSocket(wsUrl, { rejectUnauthorized: !pinned, checkServerIdentity: (() => undefined) as never, perMessageDeflate: false, handshakeTimeout: 10_000, maxPayload: 64 << 20 });
    const onAbort = () => ws.terminate();
    signal?.addEventListener("abort", onAbort, { once: true });
    ws.once("upgrade", (res) => {
      const sock = res.socket as import("node:tls").TLSSocket;
      const peer = sock.getPeerCertificate?.()?.raw;
      if (pinned && (!peer || !peer.equals(pinned))) {
        ws.terminate();
        reject(new Error("The migration peer's certificate doesn't match the one given"));
      }
    });
    ws.once("open", () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(new MigrationChannel(ws, name));
    });
    ws.once("error", (e) => {
      signal?.removeEventListener("abort", onAbort);
      reject(new Error(`Failed connecting to the migration source: ${e.message}`));
    });
  });
}
