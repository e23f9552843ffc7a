#!/usr/bin/env node
// nodelxd: the daemon and its CLI, with upstream `lxd`'s command surface.
// Only what every command needs is imported here: the daemon and each subcommand load their
// modules when chosen (start-up time and idle memory of the daemon, issue #20).
import { readFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { pathsFor, resolveLxdDir } from "./daemon/paths.js";
import type { ParsedArgs } from "./cli/args.js";

const BOOLEAN_FLAGS = new Set(["debug", "d", "verbose", "v", "force", "auto", "minimal", "preseed", "dump", "help", "h", "version", "syslog", "trace", "quiet", "q"]);

export function parseArgs(argv: string[]): ParsedArgs {
  const positional: string[] = [];
  const flags: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("-") && a !== "-") {
      const [name, inline] = a.replace(/^--?/, "").split(/=(.*)/s, 2);
      if (inline !== undefined) flags[name] = inline;
      else if (BOOLEAN_FLAGS.has(name)) flags[name] = true;
      else flags[name] = argv[++i] ?? "";
    } else positional.push(a);
  }
  return { command: positional[0] ?? "", positional: positional.slice(1), flags };
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  return pkg.version;
}

const USAGE = `Description:
  The LXD container manager (daemon) — nodelxd ${"{version}"}

Usage:
  nodelxd [flags]
  nodelxd [command]

Available Commands:
  activateifneeded Check if LXD should be started
  cluster     Low-level cluster administration commands (recover-from-quorum-loss)
  init        Configure the daemon (--auto, --preseed, --dump)
  recover     Recover missing instances and volumes from existing and unknown storage pools
  shutdown    Tell the daemon to shutdown all instances and exit
  sql         Execute a SQL query against the local or global database
  version     Show the server version
  waitready   Wait for the daemon to be ready to process requests

Flags:
  -d, --debug      Show all debug messages
      --group      The group of users that will be allowed to talk to the daemon
      --logfile    Path to the log file
      --etcd-endpoints  etcd client URLs (comma-separated) for a first cluster member
  -v, --verbose    Show all information messages
`;

/**
 * The daemon's code: the one-file bundle `npm run build` makes (scripts/bundle-daemon.mjs) when
 * it is at least as new as the compiled modules (a later bare `tsc` makes it stale), compiled
 * with the V8 code cache made beside it (src/daemon/bundle.ts); else the modules themselves.
 */
async function loadDaemon(): Promise<typeof import("./daemon/daemon.js")> {
  const modules = new URL("./daemon/daemon.js", import.meta.url);
  const bundle = fileURLToPath(new URL("./bundle/daemon.cjs", import.meta.url));
  let fresh = false;
  try {
    fresh = statSync(bundle).mtimeMs >= statSync(modules).mtimeMs;
  } catch {
    // no bundle (or no modules): the modules
  }
  return fresh ? (await import("./daemon/bundle.js")).loadBundle(bundle) : import(modules.href);
}

async function runDaemon(args: ParsedArgs): Promise<void> {
  const { Daemon } = await loadDaemon();
  const daemon = new Daemon({
    lxdDir: resolveLxdDir(),
    group: typeof args.flags.group === "string" ? args.flags.group : undefined,
    logfile: typeof args.flags.logfile === "string" ? args.flags.logfile : undefined,
    debug: !!(args.flags.debug || args.flags.d),
    verbose: !!(args.flags.verbose || args.flags.v),
    etcdEndpoints: typeof args.flags["etcd-endpoints"] === "string" ? args.flags["etcd-endpoints"].split(",").filter(Boolean) : undefined,
  });
  // SIGTERM/SIGINT/SIGQUIT leave instances running; SIGPWR stops them first (host power-off).
  for (const sig of ["SIGTERM", "SIGINT", "SIGQUIT"] as const) process.on(sig, () => void daemon.stop({ stopInstances: false }));
  process.on("SIGPWR", () => void daemon.stop({ stopInstances: true }));
  await daemon.start();
  (await import("./daemon/idle-memory.js")).releaseIdleMemorySoon();
  await daemon.stopped;
  process.exit(0);
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const socket = pathsFor(resolveLxdDir()).socket;
  const timeout = Number(args.flags.timeout ?? 0) || 0;
  if (args.flags.version && !args.command) {
    console.log(version());
    return 0;
  }
  if (args.flags.help || args.flags.h) {
    console.log(USAGE.replace("{version}", version()));
    return 0;
  }
  switch (args.command) {
    case "":
      await runDaemon(args);
      return 0;
    case "version":
      console.log(version());
      return 0;
    case "waitready":
      await (await import("./cli/waitready.js")).waitReady(socket, timeout);
      return 0;
    case "shutdown":
      await (await import("./cli/shutdown.js")).shutdown(socket, timeout, !!args.flags.force);
      return 0;
    default: {
      const cmd = (await import("./cli/commands.js")).commands[args.command];
      if (!cmd) {
        console.error(`Error: unknown command "${args.command}" for "nodelxd"`);
        return 1;
      }
      return cmd(args, socket);
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exit(code);
  },
  (err) => {
    console.error(`Error: ${(err as Error).message}`);
    process.exit(1);
  },
);
