// `nodelxd sql <local|global> <query|-|.dump|.schema>`, a client of /internal/sql as upstream's `lxd sql`.
import { readFileSync } from "node:fs";
import type { ParsedArgs } from "./args.js";
import { apiRequest, expectSuccess } from "./client.js";
import type { SqlResult } from "../daemon/sql-service.js";

const HELP = `Description:
  Execute a SQL query against the LXD local or global database

  The local database is specific to the LXD cluster member you target the
  command to, and contains member-specific data (such as the member network
  address).

  The global database is common to all members in the cluster, and contains
  cluster-specific data (such as profiles, containers, etc).

  If you are running a non-clustered LXD instance, the same applies, as that
  instance is effectively a single-member cluster.

  If <query> is the special value "-", then the query is read from
  standard input.

  If <query> is the special value ".dump", the command returns a SQL text
  dump of the given database.

  If <query> is the special value ".schema", the command returns the SQL
  text schema of the given database.

  This internal command is mostly useful for debugging and disaster
  recovery. The LXD team will occasionally provide hotfixes to users as a
  set of database queries to fix some data inconsistency.

Usage:
  nodelxd sql <local|global> <query> [flags]
`;

/** Go's fmt %v for the values a row may hold. */
function cell(v: unknown): string {
  if (v === null || v === undefined) return "<nil>";
  return String(v);
}

/** Display width as tablewriter counts it (one column per code point here). */
const width = (s: string) => [...s].length;

/** A table as upstream prints it (tablewriter: cells left aligned, headers centred, as given). */
export function formatTable(columns: string[], rows: unknown[][]): string {
  const cells = rows.map((r) => r.map(cell));
  const widths = columns.map((c, i) => Math.max(width(c), ...cells.map((r) => width(r[i] ?? ""))));
  const sep = "+" + widths.map((w) => "-".repeat(w + 2)).join("+") + "+";
  const left = (v: string, w: number) => v + " ".repeat(w - width(v));
  const centre = (v: string, w: number) => {
    const gap = w - width(v);
    return " ".repeat(Math.floor(gap / 2)) + v + " ".repeat(gap - Math.floor(gap / 2));
  };
  const line = (vals: string[], pad: (v: string, w: number) => string) => "|" + vals.map((v, i) => ` ${pad(v, widths[i])} `).join("|") + "|";
  return [sep, line(columns, centre), sep, ...cells.map((r) => line(r, left)), sep].join("\n") + "\n";
}

export async function sqlCommand(args: ParsedArgs, socket: string): Promise<number> {
  if (args.positional.length !== 2) {
    console.log(HELP);
    if (args.positional.length === 0) return 0;
    throw new Error("Missing required arguments");
  }
  const [database, given] = args.positional;
  if (database !== "local" && database !== "global") {
    console.log(HELP);
    throw new Error("Invalid database type");
  }
  const query = given === "-" ? readFileSync(0, "utf8") : given;
  if (query === ".dump" || query === ".schema") {
    const res = await apiRequest(socket, "GET", `/internal/sql?database=${database}${query === ".schema" ? "&schema=1" : ""}`);
    const meta = expectSuccess(res);
    process.stdout.write(meta.text);
    return 0;
  }
  const meta = expectSuccess(await apiRequest(socket, "POST", "/internal/sql", { database, query }));
  const results = (meta?.Results ?? []) as SqlResult[];
  let out = "";
  results.forEach((r, i) => {
    if (results.length > 1) out += `=> Query ${i}:\n\n`;
    out += r.type === "select" ? formatTable(r.columns ?? [], r.rows ?? []) : `Rows affected: ${r.rows_affected}\n`;
    if (results.length > 1) out += "\n";
  });
  process.stdout.write(out);
  return 0;
}
