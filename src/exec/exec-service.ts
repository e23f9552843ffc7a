// `POST /1.0/instances/NAME/exec`: a websocket session, or a task whose output is recorded
// to the instance's log directory (record-output) or discarded.
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { instanceResources, runningRuntime, type RuntimeOf } from "../instances/access.js";
import type { OperationManager } from "../operations/manager.js";
import { HelperProcess } from "../os/helper-process.js";
import { helperPath } from "../os/native.js";
import type { OperationView } from "../operations/types.js";
import type { AttachSpec } from "./attach.js";
import type { InstanceRuntime } from "../instances/runtime-port.js";
import { execCwd, execEnvironment, type ExecPost } from "./exec-request.js";
import { CONNECT_TIMEOUT_MS, exitStatus, ExecSession, precheck, type ExecOutcome } from "./exec-session.js";

export interface ExecServiceDeps {
  runtimeOf: RuntimeOf;
  operations: Pick<OperationManager, "create">;
  log: Logger;
}

export class ExecService {
  private readonly sessions = new Set<ExecSession>();

  constructor(private readonly deps: ExecServiceDeps) {}

  exec(project: string, name: string, post: ExecPost): OperationView {
    const rt = runningRuntime(this.deps.runtimeOf, project, name);
    const env = execEnvironment(rt.environment ?? {}, post.environment ?? {}, post.user);
    const spec: AttachSpec = { command: post.command, env, cwd: execCwd(post, env), user: post.user, group: post.group };
    const base = { description: "Executing command", project, resources: instanceResources(project, name) };

    if (!post["wait-for-websocket"]) {
      return this.deps.operations.create({
        ...base,
        class: "task",
        run: async (ctx) => {
          const files = post["record-output"] ? this.outputFiles(rt.logDir, name, ctx.id) : undefined;
          if (files) ctx.updateMetadata({ output: files.urls });
          const outcome = await this.runDetached(rt, spec, files?.paths, ctx.signal);
          return this.settle(outcome, (m) => ctx.updateMetadata(m));
        },
      });
    }

    const session = new ExecSession(rt, spec, post.interactive, { width: post.width, height: post.height }, this.deps.log);
    this.sessions.add(session);
    const op = this.deps.operations.create({
      ...base,
      class: "websocket",
      metadata: { command: post.command, environment: env, fds: session.fds, interactive: post.interactive },
      secrets: session.fds,
      connect: (secret, ws) => session.connect(secret, ws),
      run: async (ctx) => {
        try {
          const aborted = new Promise<"aborted">((r) => ctx.signal.addEventListener("abort", () => r("aborted"), { once: true }));
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), CONNECT_TIMEOUT_MS)));
          const first = await Promise.race([session.startedPromise.then(() => "started" as const), timeout, aborted]);
          clearTimeout(timer);
          if (first === "timeout") {
            session.abort();
            throw new Error("Timed out waiting for websockets to connect");
          }
          if (first === "aborted") {
            session.abort();
            throw new Error("Operation cancelled");
          }
          ctx.signal.addEventListener("abort", () => session.abort(), { once: true });
          const outcome = await session.outcome;
          const result = this.settle(outcome, (m) => ctx.updateMetadata(m));
          return result;
        } finally {
          session.closeSockets();
          this.sessions.delete(session);
        }
      },
    });
    // The client needs the response to connect; the helper can attach meanwhile.
    setImmediate(() => session.prepare());
    return op;
  }

  /** Record the exit status; a command that could not start fails the operation as LXD does. */
  private settle(outcome: ExecOutcome, update: (m: Record<string, unknown>) => void): Record<string, unknown> {
    if ("failure" in outcome) {
      update({ return: outcome.failure.exitCode });
      throw outcome.failure;
    }
    return { return: outcome.code };
  }

  private outputFiles(dir: string, name: string, id: string) {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const file = (ext: string) => `exec_${id}.${ext}`;
    return {
      paths: { stdout: join(dir, file("stdout")), stderr: join(dir, file("stderr")) },
      urls: { "1": `/1.0/instances/${name}/logs/${file("stdout")}`, "2": `/1.0/instances/${name}/logs/${file("stderr")}` },
    };
  }

  private async runDetached(
    rt: InstanceRuntime,
    spec: AttachSpec,
    files: { stdout: string; stderr: string } | undefined,
    signal: AbortSignal,
  ): Promise<ExecOutcome> {
    const fds: number[] = [];
    try {
      if (files) for (const f of [files.stdout, files.stderr]) fds.push(openSync(f, "w", 0o644));
      const check = precheck(rt, spec);
      if (check.failure) return { failure: check.failure };
      const { helper, args } = rt.attach.exec(spec);
      const child = new HelperProcess(helperPath(helper), helper, args, ["ignore", fds[0] ?? "ignore", fds[1] ?? "ignore"]);
      const onAbort = () => child.kill("SIGKILL");
      signal.addEventListener("abort", onAbort, { once: true });
      const { code, signal: killedBy } = await child.exited;
      signal.removeEventListener("abort", onAbort);
      return { code: exitStatus(code, killedBy) };
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  }

  /** Daemon stopping: end every live session. */
  stop(): void {
    for (const s of this.sessions) s.abort();
  }
}
