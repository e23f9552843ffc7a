// One `exec` with websockets, as LXD 5.0.2 speaks it. Non-interactive: fds 0/1/2 carry
// stdin/stdout/stderr as binary messages, an empty text message ends a stream. Interactive:
// fd 0 carries a pty both ways. The "control" socket carries window-resize and signal
// requests; losing it kills the command. The command starts once every data socket connected,
// but the helper enters the container as soon as the request arrives and waits there on a gate
// (see native/attach.c): attaching costs the kernel a grace period, which then overlaps the
// client's websocket handshakes instead of following them.
import { randomBytes } from "node:crypto";
import { constants } from "node:os";
import type { Socket } from "node:net";
import { closeSync } from "node:fs";
import { ReadStream as TtyStream } from "node:tty";
import type { Logger } from "pino";
import type { WebSocket } from "ws";
import { HelperProcess, type HelperStdio } from "../os/helper-process.js";
import type { InstanceRuntime } from "../instances/runtime-port.js";
import type { WebsocketLike } from "../operations/manager.js";
import { attachedPid, lookupCommand, type AttachSpec } from "./attach.js";
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
  private child?: HelperProcess;
  /** The helper's gate: one byte lets the command run, closing it cancels the command. */
  private gate?: Socket;
  /** Interactive: the master side of the pty the command runs on, and its stream once started. */
  private master?: number;
  private pty?: { fd: number; stream: TtyStream };
  private ptyQueue: Buffer[] = [];
  private stdinQueue: (Buffer | null)[] = [];
  /** Why the command cannot run, found before anything was spawned; reported once started. */
  private refused?: ExecFailure;
  private exit?: number;
  private resolveExited!: () => void;
  private readonly exited = new Promise<void>((r) => (this.resolveExited = r));
  private prepared = false;
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

  /** Check the command and attach the helper, its command held at the gate until start(). */
  prepare(): void {
    if (this.prepared || this.finished) return;
    this.prepared = true;
    try {
      this.refused = precheck(this.rt, this.spec).failure;
      if (!this.refused) this.spawnHelper();
    } catch (e) {
      this.refused = new ExecFailure((e as Error).message, -1);
    }
  }

  private spawnHelper(): void {
    const { helper, args } = this.rt.attach.exec(this.spec, 3);
    this.log.debug({ instance: this.rt.name, command: this.spec.command, interactive: this.interactive }, "exec");
    let stdio: HelperStdio[];
    if (this.interactive) {
      const cols = this.size.width > 0 ? this.size.width : 80;
      const rows = this.size.height > 0 ? this.size.height : 24;
      const owner = { uid: this.rt.idmap.uid(this.spec.user), gid: this.rt.idmap.gid(this.spec.group) };
      let slave: number;
      [this.master, slave] = native.openPtyInRoot(this.rt.pid ?? 0, owner.uid, owner.gid, cols, rows);
      stdio = [slave, slave, slave, "pipe"];
    } else stdio = ["pipe", "pipe", "pipe", "pipe"];
    let child: HelperProcess;
    try {
      child = new HelperProcess(helperPath(helper), helper, args, stdio);
    } finally {
      if (this.interactive) closeSync(stdio[0] as number);
    }
    this.child = child;
    this.gate = child.stdio[3]!;
    this.gate.on("error", () => {});
    child.stdin?.on("error", () => {});
    void child.exited.then(({ code, signal }) => {
      this.exit = exitStatus(code, signal);
      this.gate?.destroy();
      this.resolveExited();
    });
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
      if (msg.command === "window-resize" && this.master !== undefined) {
        const cols = Number.parseInt(msg.args?.width ?? "", 10);
        const rows = Number.parseInt(msg.args?.height ?? "", 10);
        if (cols > 0 && rows > 0) native.setWindowSize(this.master, cols, rows);
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
    const child = this.child;
    if (!child) return;
    const target = attachedPid(child.pid);
    if (target === undefined) return child.kill(signo);
    try {
      process.kill(target, signo);
    } catch {
      /* already gone */
    }
  }

  /** Every data socket is connected: stream the output and let the command run. */
  private start(): void {
    this.prepare();
    this.started = true;
    this.resolveStarted();
    if (this.refused) return this.end({ failure: this.refused });
    if (this.finished || !this.child) return;
    if (this.interactive) this.streamPty(this.master!);
    else this.streamPiped(this.child);
    this.gate!.end("g");
  }

  private streamPiped(child: HelperProcess): void {
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
    void Promise.all([...outputs, this.exited]).then(() => this.end({ code: this.exit ?? -1 }));
  }

  /**
   * The command runs on a pty of the container's own devpts (as LXD gives it), owned by the
   * exec user; the daemon keeps the master. Output ends when every holder of the slave closed
   * it (read gives EIO), or shortly after the command exits if something else still holds it.
   */
  private streamPty(master: number): void {
    const stream = new TtyStream(master);
    this.pty = { fd: master, stream };
    for (const buf of this.ptyQueue.splice(0)) stream.write(buf);
    const sink = new SocketSink(this.sockets.get("0")!, stream);
    stream.on("data", (chunk: Buffer) => sink.write(chunk));
    const outputDone = new Promise<void>((resolve) => {
      stream.once("error", () => resolve()); // EIO: the last slave holder closed it
      stream.once("close", () => resolve());
    });
    void this.exited.then(() => {
      const grace = new Promise<void>((r) => setTimeout(r, 200).unref());
      void Promise.race([outputDone, grace])
        .then(() => sink.drained())
        .then(() => {
          stream.destroy();
          this.end({ code: this.exit ?? -1 });
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
    if (!this.started) this.gate?.destroy();
    if (!this.finished) this.signal(9);
    if (this.pty === undefined && this.master !== undefined) {
      closeSync(this.master);
      this.master = undefined;
    }
    this.end({ failure: new ExecFailure("Operation cancelled", -1) });
    this.closeSockets();
  }
}
