// `POST /1.0/instances/NAME/console`: the instance's console (its driver's console program on a pty) over a
// websocket operation with fds "0" (the terminal, both ways) and "control" (window-resize).
// Detaching is the client's business (ctrl-a q): it closes fd 0 and the console program is ended.
import { randomBytes } from "node:crypto";
import type { IPty } from "node-pty";
import type { WebSocket } from "ws";
import { z } from "zod";
import { BadRequest } from "../shared/errors.js";
import { SocketSink } from "../exec/socket-sink.js";
import { instanceResources, runningRuntime, type RuntimeOf } from "../instances/access.js";
import type { InstanceRuntime } from "../instances/runtime-port.js";
import { spawnPty } from "../os/exec.js";
import type { OperationManager, WebsocketLike } from "../operations/manager.js";
import type { OperationView } from "../operations/types.js";

export const consolePostSchema = z.object({
  width: z.number().int().optional().default(0),
  height: z.number().int().optional().default(0),
  type: z.string().optional().default("console"),
});
export type ConsolePost = z.infer<typeof consolePostSchema>;

const CONNECT_TIMEOUT_MS = 5000;

class ConsoleSession {
  readonly fds = { "0": randomBytes(32).toString("hex"), control: randomBytes(32).toString("hex") };
  private readonly sockets = new Map<string, WebSocket>();
  private pty?: IPty;
  private resolveConnected!: () => void;
  readonly connected = new Promise<void>((r) => (this.resolveConnected = r));
  private resolveEnded!: () => void;
  readonly ended = new Promise<void>((r) => (this.resolveEnded = r));

  constructor(
    private readonly rt: InstanceRuntime,
    private readonly size: { width: number; height: number },
  ) {}

  connect(secret: string, socket: WebsocketLike): void {
    const ws = socket as WebSocket;
    const fd = (Object.keys(this.fds) as ("0" | "control")[]).find((k) => this.fds[k] === secret);
    if (!fd || this.sockets.has(fd)) throw new Error("Invalid websocket secret");
    this.sockets.set(fd, ws);
    ws.on("close", () => this.end());
    if (fd === "control") {
      ws.on("message", (data, binary) => {
        if (binary) return;
        try {
          const msg = JSON.parse(data.toString()) as { command?: string; args?: Record<string, string> };
          const cols = Number.parseInt(msg.args?.width ?? "", 10);
          const rows = Number.parseInt(msg.args?.height ?? "", 10);
          if (msg.command === "window-resize" && cols > 0 && rows > 0) this.pty?.resize(cols, rows);
        } catch {
          /* not a control message */
        }
      });
    } else {
      ws.on("message", (data, binary) => {
        if (binary) this.pty?.write(Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]));
      });
      this.start(ws);
    }
  }

  private start(ws: WebSocket): void {
    const { program, args } = this.rt.attach.console();
    const pty = spawnPty(program, args, {
      cols: this.size.width > 0 ? this.size.width : 80,
      rows: this.size.height > 0 ? this.size.height : 24,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TERM: "xterm" },
    });
    this.pty = pty;
    const sink = new SocketSink(ws, pty);
    pty.onData((data) => sink.write(Buffer.isBuffer(data) ? data : Buffer.from(data)));
    pty.onExit(() => void sink.drained().then(() => this.end()));
    this.resolveConnected();
  }

  end(): void {
    try {
      this.pty?.kill("SIGTERM");
    } catch {
      /* already gone */
    }
    for (const ws of this.sockets.values()) if (ws.readyState === ws.OPEN) ws.close(1000);
    this.resolveEnded();
  }
}

export class ConsoleService {
  private readonly sessions = new Set<ConsoleSession>();

  constructor(private readonly deps: { runtimeOf: RuntimeOf; operations: Pick<OperationManager, "create"> }) {}

  attach(project: string, name: string, post: ConsolePost): OperationView {
    if (post.type === "vga") {
      this.assertExists(project, name);
      throw new BadRequest("VGA console is only supported by virtual machines");
    }
    if (post.type !== "console") throw new BadRequest(`Unknown console type "${post.type}"`);
    const rt = runningRuntime(this.deps.runtimeOf, project, name);
    const session = new ConsoleSession(rt, { width: post.width, height: post.height });
    this.sessions.add(session);
    return this.deps.operations.create({
      class: "websocket",
      description: "Showing console",
      project,
      resources: instanceResources(project, name),
      metadata: { fds: session.fds },
      secrets: session.fds,
      connect: (secret, ws) => session.connect(secret, ws),
      run: async (ctx) => {
        try {
          let timer: NodeJS.Timeout | undefined;
          const timedOut = await Promise.race([
            session.connected.then(() => false),
            new Promise<boolean>((r) => (timer = setTimeout(() => r(true), CONNECT_TIMEOUT_MS))),
          ]);
          clearTimeout(timer);
          if (timedOut) throw new Error("Timed out waiting for websockets to connect");
          ctx.signal.addEventListener("abort", () => session.end(), { once: true });
          await session.ended;
        } finally {
          session.end();
          this.sessions.delete(session);
        }
      },
    });
  }

  private assertExists(project: string, name: string): void {
    this.deps.runtimeOf(project, name);
  }

  stop(): void {
    for (const s of this.sessions) s.end();
  }
}
