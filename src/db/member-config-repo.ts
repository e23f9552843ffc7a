// Per-member rows of storage pools and networks in a cluster (LXD's storage_pools_nodes and
// networks_nodes, with the member-specific config of each): which members an object is defined
// on, its state on each (pending, created, errored) and each member's own keys. Statements find
// the parent row by name, so replaying them on another member's replica gives the same rows.
import type { Db } from "./database.js";

export type MemberState = "pending" | "created" | "errored";

export interface MemberRow {
  member: string;
  state: MemberState;
  config: Record<string, string>;
}

interface Raw {
  member: string;
  state: MemberState;
  config: string;
}

interface Kind {
  table: string;
  fk: string;
  parent: string;
  /** WHERE clause selecting the parent row by its name (and project for networks). */
  where: string;
}

const KINDS = {
  pool: { table: "storage_pools_members", fk: "pool_id", parent: "storage_pools", where: "name = ?" },
  network: { table: "networks_members", fk: "network_id", parent: "networks", where: "project = 'default' AND name = ?" },
} satisfies Record<string, Kind>;

export class MemberConfigRepo {
  private readonly k: Kind;
  constructor(
    private readonly db: Db,
    kind: keyof typeof KINDS,
  ) {
    this.k = KINDS[kind];
  }

  private parentId(name: string): string {
    return `(SELECT id FROM ${this.k.parent} WHERE ${this.k.where})`;
  }

  /** Every member row of the object `name`, by member name. */
  all(name: string): MemberRow[] {
    const rows = this.db.prepare(`SELECT member, state, config FROM ${this.k.table} WHERE ${this.k.fk} = ${this.parentId(name)} ORDER BY member`).all(name) as Raw[];
    return rows.map((r) => ({ member: r.member, state: r.state, config: JSON.parse(r.config) }));
  }

  get(name: string, member: string): MemberRow | undefined {
    return this.all(name).find((r) => r.member === member);
  }

  insert(name: string, member: string, config: Record<string, string>, state: MemberState = "pending"): void {
    this.db.prepare(`INSERT INTO ${this.k.table} (${this.k.fk}, member, state, config) SELECT id, ?, ?, ? FROM ${this.k.parent} WHERE ${this.k.where}`).run(member, state, JSON.stringify(config), name);
  }

  /** Set a member's state (and config, when given); inserts the row when the member has none. */
  set(name: string, member: string, state: MemberState, config?: Record<string, string>): void {
    const cur = this.get(name, member);
    if (!cur) return this.insert(name, member, config ?? {}, state);
    this.db
      .prepare(`UPDATE ${this.k.table} SET state = ?, config = ? WHERE ${this.k.fk} = ${this.parentId(name)} AND member = ?`)
      .run(state, JSON.stringify(config ?? cur.config), name, member);
  }

  /** A member renamed: its rows follow. */
  renameMember(from: string, to: string): void {
    this.db.prepare(`UPDATE ${this.k.table} SET member = ? WHERE member = ?`).run(to, from);
  }

  /** A member removed from the cluster: its rows go. */
  deleteMember(member: string): void {
    this.db.prepare(`DELETE FROM ${this.k.table} WHERE member = ?`).run(member);
  }
}

/** LXD's names for the states in the API (`status`). */
export function apiStatus(state: string): string {
  return state === "pending" ? "Pending" : state === "errored" ? "Errored" : state === "created" ? "Created" : "Unknown";
}
