// One `exec` with websockets, as LXD 5.0.2 speaks it. Non-interactive: fds 0/1/2 carry
// stdin/stdout/stderr as binary messages, an empty text message ends a stream. Interactive:
// fd 0 carries a pty both ways. The "control" socket carries window-resize and signal
// requests; losing it kills the command. The command starts once every data socket connected.
import { randomBytes } from "node:crypto";
import { constants } from "node:os";
import type { ChildProcess } from "node:child_process";
import { closeSync } from "node:fs";
import { ReadStream as TtyStream } from "node:tty";
import type { Logger } from "pino";
import type { WebSocket } from "ws";
import { spawnWithStdio } from "../os/exec.js";
import type { InstanceRuntime } from "../instances/runtime-port.js";
import type { WebsocketLike } from "../operations/manager.js";
import { attachArgs, attachedPid, lookupCommand, type AttachSpec } from "./attach.js";
import { withRoot } from "../files/in-root.js";
import { SocketSink } from "./socket-sink.js";
import { helperPath, native } from "../os/native.js";

export const CONNECT_TIMEOUT_MS = 5000;

export class ExecFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

const secret = () => randomBytes(32).toString("hex");

/** Outcome of a command: its exit status, or a failure to start it (with LXD's status). */
export type ExecOutcome = { code: number } | { failure: ExecFailure };

/** Resolve the command in the container first: LXD reports these without running anything. */
export function precheck(rt: InstanceRuntime, spec: AttachSpec): { failure?: ExecFailure } {
  return withRoot(rt, (root) => {
    const found = lookupCommand(root, spec.command[0] ?? "", spec.env.PATH ?? "", spec.cwd);
    if (found === "not-found") return { failure: new ExecFailure("Command not found", 127) };
    if (found === "not-executable") return { failure: new ExecFailure("Command not executable", 126) };
    return {};
  });
}

/** Exit status as a shell reports it: the code, or 128 + the signal that killed it. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | number | null | undefined): number {
  if (code !== null && code !== undefined && !(signal && code === 0)) return code;
  if (typeof signal === "number") return 128 + signal;
  if (signal) return 128 + (osSignals[signal] ?? 0);
  return -1;
}

const osSignals = constants.signals as Record<string, number>;

export class ExecSession {
  readonly fds: Record<string, string>;
  private readonly sockets = new Map<string, WebSocket>();
  private child?: ChildProcess;
  /** Interactive: the master side of the pty the command runs on. */
  private pty?: { fd: number; stream: TtyStream };
  private stdinQueue: (Buffer | null)[] = [];
  private started = false;
  private finished = false;
  private resolveStarted!: () => void;
  readonly startedPromise = new Promise<void>((r) => (this.resolveStarted = r));
  private resolveOutcome!: (o: ExecOutcome) => void;
  readonly outcome = new Promise<ExecOutcome>((r) => (this.resolveOutcome = r));

  constructor(
    private readonly rt: InstanceRuntime,
    private readonly spec: AttachSpec,
    private readonly interactive: boolean,
    private readonly size: { width: number; height: number },
    private readonly log: Logger,
  ) {
    this.fds = interactive ? { "0": secret(), control: secret() } : { "0": secret(), "1": secret(), "2": secret(), control: secret() };
  }

  private get required(): string[] {
    return this.interactive ? ["0"] : ["0", "1", "2"];
  }

  connect(given: string, socket: WebsocketLike): void {
    const ws = socket as WebSocket;
    const fd = Object.keys(this.fds).find((k) => this.fds[k] === given);
    if (!fd || this.sockets.has(fd) || this.finished) throw new Error("Invalid websocket secret");
    this.sockets.set(fd, ws);
    if (fd === "control") this.attachControl(ws);
    if (fd === "0") this.attachInput(ws);
    if (!this.started && this.required.every((k) => this.sockets.has(k))) this.start();
  }

  /** Control messages: {"command":"window-resize","args":{...}} and {"command":"signal","signal":N}. */
  private attachControl(ws: WebSocket): void {
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      let msg: { command?: string; args?: Record<string, string>; signal?: number };
      try {
        msg = JSON.parse(data.toString());
      } catch {
        return;
      }
      if (msg.command === "window-resize" && this.pty) {
        const cols = Number.parseInt(msg.args?.width ?? "", 10);
        const rows = Number.parseInt(msg.args?.height ?? "", 10);
        if (cols > 0 && rows > 0) native.setWindowSize(this.pty.fd, cols, rows);
      } else if (msg.command === "signal" && Number.isInteger(msg.signal)) {
        this.signal(msg.signal!);
      }
    });
    ws.on("close", () => {
      if (!this.finished) this.signal(9);
    });
  }

  private attachInput(ws: WebSocket): void {
    ws.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      if (this.interactive) {
        if (isBinary) this.feedPty(buf);
        return;
      }
      this.feedStdin(isBinary ? buf : null, ws);
    });
    ws.on("close", () => {
      if (!this.interactive) this.feedStdin(null, ws);
    });
  }

  private ptyQueue: Buffer[] = [];

  private feedPty(buf: Buffer): void {
    if (this.pty) this.pty.stream.write(buf);
    else this.ptyQueue.push(buf);
  }

  /** Stdin for the child; null is end-of-file. */
  private feedStdin(chunk: Buffer | null, ws: WebSocket): void {
    const stdin = this.child?.stdin;
    if (!stdin) {
      this.stdinQueue.push(chunk);
      return;
    }
    if (stdin.writableEnded || stdin.destroyed) return;
    if (chunk === null) return void stdin.end();
    if (!stdin.write(chunk)) {
      ws.pause();
      stdin.once("drain", () => ws.resume());
    }
  }

  /** Deliver a signal to the command itself (the helper does not forward them). */
  private signal(signo: number): void {
    const attach = this.child?.pid;
    if (!attach) return;
    const target = attachedPid(attach);
    try {
      process.kill(target ?? attach, signo);
    } catch {
      /* already gone */
    }
  }

  private start(): void {
    this.started = true;
    this.resolveStarted();
    let check: ReturnType<typeof precheck>;
    try {
      check = precheck(this.rt, this.spec);
    } catch (e) {
      return this.end({ failure: new ExecFailure((e as Error).message, -1) });
    }
    if (check.failure) return this.end({ failure: check.failure });
    const args = attachArgs(this.rt, this.spec);
    this.log.debug({ instance: this.rt.name, command: this.spec.command, interactive: this.interactive }, "exec");
    if (this.interactive) this.startPty(args);
    else this.startPiped(args);
  }

  private startPiped(args: string[]): void {
    const child = spawnWithStdio(helperPath("nodelxd-attach"), args, { stdio: ["pipe", "pipe", "pipe"], argv0: "nodelxd-attach" });
    this.child = child;
    child.stdin!.on("error", () => {});
    const ws0 = this.sockets.get("0")!;
    for (const chunk of this.stdinQueue.splice(0)) this.feedStdin(chunk, ws0);
    const outputs = (["1", "2"] as const).map((fd) => {
      const stream = fd === "1" ? child.stdout! : child.stderr!;
      const sink = new SocketSink(this.sockets.get(fd)!, stream);
      stream.on("data", (chunk: Buffer) => sink.write(chunk));
      return new Promise<void>((resolve) =>
        stream.once("end", () =>
          void sink.drained().then(() => {
            sink.endOfStream();
            resolve();
          }),
        ),
      );
    });
    let exit: number | undefined;
    child.on("error", (err) => this.end({ failure: new ExecFailure(err.message, -1) }));
    child.on("exit", (code, sig) => (exit = exitStatus(code, sig)));
    child.on("close", () => void Promise.all(outputs).then(() => this.end({ code: exit ?? -1 })));
  }

  /**
   * The command runs on a pty of the container's own devpts (as LXD gives it), owned by the
   * exec user; the daemon keeps the master. Output ends when every holder of the slave closed
   * it (read gives EIO), or shortly after the command exits if something else still holds it.
   */
  private startPty(args: string[]): void {
    const cols = this.size.width > 0 ? this.size.width : 80;
    const rows = this.size.height > 0 ? this.size.height : 24;
    const owner = { uid: this.rt.idmap.uid(this.spec.user), gid: this.rt.idmap.gid(this.spec.group) };
    let master: number;
    let slave: number;
    try {
      [master, slave] = native.openPtyInRoot(this.rt.pid ?? 0, owner.uid, owner.gid, cols, rows);
    } catch (e) {
      return this.end({ failure: new ExecFailure((e as Error).message, -1) });
    }
    const child = spawnWithStdio(helperPath("nodelxd-attach"), args, { stdio: [slave, slave, slave], argv0: "nodelxd-attach" });
    closeSync(slave);
    this.child = child;
    const stream = new TtyStream(master);
    this.pty = { fd: master, stream };
    for (const buf of this.ptyQueue.splice(0)) stream.write(buf);
    const sink = new SocketSink(this.sockets.get("0")!, stream);
    stream.on("data", (chunk: Buffer) => sink.write(chunk));
    const outputDone = new Promise<void>((resolve) => {
      stream.once("error", () => resolve()); // EIO: the last slave holder closed it
      stream.once("close", () => resolve());
    });
    let exit: number | undefined;
    child.on("error", (err) => this.end({ failure: new ExecFailure(err.message, -1) }));
    child.on("exit", (code, sig) => {
      exit = exitStatus(code, sig);
      const grace = new Promise<void>((r) => setTimeout(r, 200).unref());
      void Promise.race([outputDone, grace])
        .then(() => sink.drained())
        .then(() => {
          stream.destroy();
          this.end({ code: exit ?? -1 });
        });
    });
  }

  private end(outcome: ExecOutcome): void {
    if (this.finished) return;
    this.finished = true;
    this.resolveOutcome(outcome);
  }

  /** Close every socket normally (after the operation recorded the outcome). */
  closeSockets(): void {
    for (const ws of this.sockets.values()) if (ws.readyState === ws.OPEN) ws.close(1000);
  }

  /** Daemon shutdown or connect timeout: kill whatever runs and end the session. */
  abort(): void {
    if (this.started && !this.finished) this.signal(9);
    this.end({ failure: new ExecFailure("Operation cancelled", -1) });
    this.closeSockets();
  }
}
