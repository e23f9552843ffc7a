// Client-side subcommands of `nodelxd` beyond waitready/shutdown/version. One line each.
import type { ParsedArgs } from "./args.js";
import { activateIfNeededCommand } from "./activateifneeded.js";
import { clusterCommand } from "./cluster.js";
import { initCommand } from "./init.js";
import { recoverCommand } from "./recover.js";
import { sqlCommand } from "./sql.js";

export type Command = (args: ParsedArgs, socket: string) => Promise<number>;

export const commands: Record<string, Command> = {
  activateifneeded: activateIfNeededCommand,
  cluster: clusterCommand,
  init: initCommand,
  recover: recoverCommand,
  sql: sqlCommand,
};
