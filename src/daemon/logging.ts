// pino logger writing to stderr or --logfile, mirrored to `logging` events for `lxc monitor`.
import { Writable } from "node:stream";
import pino, { type Logger } from "pino";
import type { EventHub } from "../operations/events.js";

const LEVEL_NAMES: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warning", 50: "error", 60: "crit" };

export function createLogger(opts: { logfile?: string; debug?: boolean; verbose?: boolean; events?: EventHub }): Logger {
  const level = opts.debug ? "debug" : opts.verbose ? "info" : "warn";
  const dest = opts.logfile ? pino.destination({ dest: opts.logfile, mkdir: true, sync: false }) : pino.destination(2);
  const streams: pino.StreamEntry[] = [{ level, stream: dest }];
  const events = opts.events;
  if (events) {
    const mirror = new Writable({
      write(chunk, _enc, cb) {
        if (events.size > 0) {
          try {
            const { level: n, msg, time, pid, hostname, ...context } = JSON.parse(String(chunk));
            void time;
            void pid;
            void hostname;
            const ctx = Object.fromEntries(Object.entries(context).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
            events.publish("logging", { message: msg, level: LEVEL_NAMES[n] ?? "info", context: ctx });
          } catch {
            /* a line we cannot parse is not worth an event */
          }
        }
        cb();
      },
    });
    streams.push({ level: "debug", stream: mirror });
  }
  return pino({ level: "debug", base: { pid: process.pid } }, pino.multistream(streams));
}
