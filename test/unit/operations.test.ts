import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/database.js";
import { EventHub } from "../../src/operations/events.js";
import { OperationManager } from "../../src/operations/manager.js";

const log = pino({ level: "silent" });
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function setup() {
  const dir = mkdtempSync("/tmp/nodelxd-unit-");
  dirs.push(dir);
  const file = join(dir, "db.sqlite");
  const events = new EventHub();
  return { file, events, open: () => new OperationManager(openDatabase(file), events, log) };
}

describe("OperationManager", () => {
  it("runs an operation to success and records its result", async () => {
    const { open } = setup();
    const ops = open();
    const op = ops.create({ class: "task", description: "Testing", run: async () => ({ answer: 42 }) });
    expect(op.status).toBe("Running");
    const done = await ops.wait(op.id, 5);
    expect(done.status).toBe("Success");
    expect(done.metadata).toEqual({ answer: 42 });
    expect(ops.list().map((o) => o.id)).toContain(op.id);
  });

  it("records failures with their message", async () => {
    const { open } = setup();
    const ops = open();
    const op = ops.create({ class: "task", description: "Failing", run: async () => { throw new Error("boom"); } });
    const done = await ops.wait(op.id, 5);
    expect(done.status_code).toBe(400);
    expect(done.err).toBe("boom");
  });

  it("returns the running operation when a wait times out", async () => {
    const { open } = setup();
    const ops = open();
    const op = ops.create({ class: "task", description: "Slow", mayCancel: true, run: (ctx) => new Promise((r) => ctx.signal.addEventListener("abort", () => r())) });
    const t0 = Date.now();
    const view = await ops.wait(op.id, 0.2);
    expect(view.status).toBe("Running");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    await ops.cancel(op.id);
    expect(ops.get(op.id).status).toBe("Cancelled");
  });

  it("refuses to cancel operations that can't be cancelled", async () => {
    const { open } = setup();
    const ops = open();
    let release!: () => void;
    const op = ops.create({ class: "task", description: "Pinned", run: () => new Promise<void>((r) => (release = r)) });
    await expect(ops.cancel(op.id)).rejects.toThrow("This operation can't be cancelled");
    release();
  });

  it("marks operations left running by a dead daemon as failed on the next start", () => {
    const { open } = setup();
    const first = open();
    const op = first.create({ class: "task", description: "Interrupted", run: () => new Promise(() => {}) });
    // a second manager on the same file is the restarted daemon
    const second = open();
    expect(second.recoverInterrupted()).toBe(1);
    const view = second.get(op.id);
    expect(view.status).toBe("Failure");
    expect(view.err).toMatch(/interrupted/);
  });

  it("emits operation events", async () => {
    const { open, events } = setup();
    const seen: string[] = [];
    events.subscribe({ filter: { types: new Set(["operation"]) }, send: (e) => seen.push((e.metadata as { status: string }).status) });
    const ops = open();
    const op = ops.create({ class: "task", description: "Evented", run: async () => {} });
    await ops.wait(op.id, 5);
    expect(seen).toEqual(["Running", "Success"]);
  });

  it("404s unknown operations", () => {
    const { open } = setup();
    expect(() => open().get("nope")).toThrow("Operation not found");
  });
});
