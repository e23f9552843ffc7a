import type { ForwardPort } from "../network/forwards/rules.js";
import type { Db } from "./database.js";

export interface NetworkForwardRow {
  project: string;
  network: string;
  listen_address: string;
  description: string;
  config: Record<string, string>;
  ports: ForwardPort[];
}

interface Raw extends Omit<NetworkForwardRow, "config" | "ports"> {
  config: string;
  ports: string;
}

const COLUMNS = "project, network, listen_address, description, config, ports";
const toRow = (r: Raw): NetworkForwardRow => ({ ...r, config: JSON.parse(r.config), ports: JSON.parse(r.ports) });

/** Address forwards of managed networks, keyed by network and listen address. */
export class NetworkForwardRepo {
  constructor(private readonly db: Db) {}

  list(project: string, network: string): NetworkForwardRow[] {
    return (this.db.prepare(`SELECT ${COLUMNS} FROM network_forwards WHERE project = ? AND network = ? ORDER BY id`).all(project, network) as Raw[]).map(toRow);
  }

  all(): NetworkForwardRow[] {
    return (this.db.prepare(`SELECT ${COLUMNS} FROM network_forwards ORDER BY id`).all() as Raw[]).map(toRow);
  }

  get(project: string, network: string, listen: string): NetworkForwardRow | undefined {
    const r = this.db.prepare(`SELECT ${COLUMNS} FROM network_forwards WHERE project = ? AND network = ? AND listen_address = ?`).get(project, network, listen) as Raw | undefined;
    return r && toRow(r);
  }

  create(row: NetworkForwardRow): void {
    this.db
      .prepare(`INSERT INTO network_forwards (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(row.project, row.network, row.listen_address, row.description, JSON.stringify(row.config), JSON.stringify(row.ports));
  }

  update(row: NetworkForwardRow): void {
    this.db
      .prepare("UPDATE network_forwards SET description = ?, config = ?, ports = ? WHERE project = ? AND network = ? AND listen_address = ?")
      .run(row.description, JSON.stringify(row.config), JSON.stringify(row.ports), row.project, row.network, row.listen_address);
  }

  delete(project: string, network: string, listen: string): void {
    this.db.prepare("DELETE FROM network_forwards WHERE project = ? AND network = ? AND listen_address = ?").run(project, network, listen);
  }

  /** A network is renamed or deleted: its forwards follow it or go with it. */
  renameNetwork(project: string, from: string, to: string): void {
    this.db.prepare("UPDATE network_forwards SET network = ? WHERE project = ? AND network = ?").run(to, project, from);
  }

  deleteNetwork(project: string, network: string): void {
    this.db.prepare("DELETE FROM network_forwards WHERE project = ? AND network = ?").run(project, network);
  }
}
