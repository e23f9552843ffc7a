// A minimal LXD REST client over a unix socket for the benchmarks: the same code drives
// nodelxd and the daemon it is compared with.
import { createReadStream } from "node:fs";
import { Agent, request } from "node:http";
import { dirname } from "node:path";
import type { Readable } from "node:stream";

export interface Response {
  status: number;
  body: any;
}

export type Body = undefined | Record<string, unknown> | { file: string };

export class BenchClient {
  private readonly agent = new Agent({ keepAlive: true });

  constructor(readonly socket: string) {}

  /** The directory `lxc` needs as LXD_DIR to reach this daemon. */
  get lxdDir(): string {
    if (!this.socket.endsWith("/unix.socket")) throw new Error(`${this.socket}: the stock client needs a socket named unix.socket`);
    return dirname(this.socket);
  }

  request(method: string, path: string, body?: Body, headers: Record<string, string> = {}): Promise<Response> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, method, path, agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on("error", reject);
      });
      req.on("error", reject);
      if (body && "file" in body && typeof body.file === "string") {
        const src: Readable = createReadStream(body.file);
        src.on("error", reject);
        src.pipe(req);
      } else {
        if (body !== undefined) req.setHeader("Content-Type", "application/json");
        req.end(body === undefined ? undefined : JSON.stringify(body));
      }
    });
  }

  /** A synchronous call; its metadata, or an error with LXD's message. */
  async sync(method: string, path: string, body?: Body, headers?: Record<string, string>): Promise<any> {
    const r = await this.request(method, path, body, headers);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body?.error ?? r.body}`);
    return r.body?.metadata;
  }

  /** Start an operation and return its id without waiting. */
  async start(method: string, path: string, body?: Body, headers?: Record<string, string>): Promise<{ id: string; metadata: any }> {
    const r = await this.request(method, path, body, headers);
    if (r.status !== 202) throw new Error(`${method} ${path}: ${r.status} ${r.body?.error ?? JSON.stringify(r.body)}`);
    return { id: r.body.metadata.id, metadata: r.body.metadata };
  }

  async wait(id: string, what: string): Promise<any> {
    const op = await this.sync("GET", `/1.0/operations/${id}/wait?timeout=300`);
    if (op.status !== "Success") throw new Error(`${what}: ${op.status}: ${op.err}`);
    return op;
  }

  /** Run an asynchronous call to completion. */
  async op(method: string, path: string, body?: Body, headers?: Record<string, string>): Promise<any> {
    const { id } = await this.start(method, path, body, headers);
    return this.wait(id, `${method} ${path}`);
  }

  close(): void {
    this.agent.destroy();
  }
}
