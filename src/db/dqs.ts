// SQLite's double-quoted string literals ("DQS"): LXD's SQLite (dqlite, go-sqlite3) accepts
// `WHERE name="foo"`, reading "foo" as an identifier when one exists and as a string otherwise.
// better-sqlite3 is built without that fallback, so SQL written for LXD (`lxd sql`, patch files)
// is retried here the way SQLite would resolve it: a double-quoted token that SQLite reports as
// no such column becomes a single-quoted string, and the statement runs again.
const NO_SUCH_COLUMN = /^no such column: "((?:[^"]|"")*)" - should this be a string literal in single-quotes\?$/;

/** `sql` with every double-quoted token `"word"` (outside strings and comments) made a string literal. */
export function quoteAsString(sql: string, word: string): string {
  const token = `"${word}"`;
  let out = "";
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'" || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c;
      let j = i + 1;
      while (j < sql.length && !(sql[j] === close && sql[j + 1] !== close)) j += sql[j] === close ? 2 : 1;
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === "-" && sql[i + 1] === "-") {
      const j = sql.indexOf("\n", i);
      const end = j === -1 ? sql.length : j;
      out += sql.slice(i, end);
      i = end;
    } else if (c === "/" && sql[i + 1] === "*") {
      const j = sql.indexOf("*/", i + 2);
      const end = j === -1 ? sql.length : j + 2;
      out += sql.slice(i, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      while (j < sql.length && !(sql[j] === '"' && sql[j + 1] !== '"')) j += sql[j] === '"' ? 2 : 1;
      const quoted = sql.slice(i, j + 1);
      out += quoted === token ? `'${word.replace(/""/g, '"').replace(/'/g, "''")}'` : quoted;
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Run `run(sql)`, retrying with double-quoted strings resolved as SQLite's DQS fallback would. */
export function withDqsFallback<T>(sql: string, run: (sql: string) => T): T {
  for (let attempt = 0; ; attempt++) {
    try {
      return run(sql);
    } catch (e) {
      const m = NO_SUCH_COLUMN.exec((e as Error).message);
      if (!m || attempt >= 32) throw e;
      const next = quoteAsString(sql, m[1]);
      if (next === sql) throw e;
      sql = next;
    }
  }
}
