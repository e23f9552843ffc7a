// The subset of pongo2 (Django-style templates) that LXD image templates use:
// {{ expression }}, {% if / elif / else / endif %}, {# comments #}; expressions with
// dotted lookups, ["key"] indexing, string/number/boolean literals, function calls
// (config_get), comparisons (== != < > <= >= in), and/or/not, and the filters default,
// lower, upper, trim. Autoescape is off, as LXD renders them.

export type Value = string | number | boolean | null | undefined | Value[] | { [k: string]: Value } | ((...args: Value[]) => Value);
export type Context = Record<string, Value>;

export class TemplateError extends Error {}

type Node = { kind: "text"; text: string } | { kind: "out"; expr: Expr } | { kind: "if"; branches: { cond: Expr; body: Node[] }[]; otherwise: Node[] };

type Expr =
  | { kind: "lit"; value: Value }
  | { kind: "var"; name: string }
  | { kind: "get"; target: Expr; key: Expr }
  | { kind: "call"; fn: Expr; args: Expr[] }
  | { kind: "not"; expr: Expr }
  | { kind: "bin"; op: string; left: Expr; right: Expr }
  | { kind: "filter"; name: string; target: Expr; arg?: Expr };

// --- lexing the template into text and tags ---

interface Tag {
  type: "text" | "var" | "block";
  body: string;
}

function splitTags(src: string): Tag[] {
  const tags: Tag[] = [];
  const re = /\{\{-?([\s\S]*?)-?\}\}|\{%-?([\s\S]*?)-?%\}|\{#[\s\S]*?#\}/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(src)) !== null) {
    if (m.index > last) tags.push({ type: "text", body: src.slice(last, m.index) });
    if (m[1] !== undefined) tags.push({ type: "var", body: m[1].trim() });
    else if (m[2] !== undefined) tags.push({ type: "block", body: m[2].trim() });
    last = re.lastIndex;
  }
  if (last < src.length) tags.push({ type: "text", body: src.slice(last) });
  return tags;
}

// --- parsing tags into a tree ---

export function parseTemplate(src: string): Node[] {
  const tags = splitTags(src);
  let i = 0;
  const parseBlock = (ends: string[]): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (i < tags.length) {
      const t = tags[i++];
      if (t.type === "text") nodes.push({ kind: "text", text: t.body });
      else if (t.type === "var") nodes.push({ kind: "out", expr: parseExpr(t.body) });
      else {
        const [word] = t.body.split(/\s+/, 1);
        const rest = t.body.slice(word.length).trim();
        if (ends.includes(word)) {
          i--;
          return { nodes, end: word };
        }
        if (word === "autoescape" || word === "endautoescape") continue;
        if (word !== "if") throw new TemplateError(`Unsupported template tag "${word}"`);
        const branches: { cond: Expr; body: Node[] }[] = [];
        let cond = parseExpr(rest);
        let otherwise: Node[] = [];
        for (;;) {
          const { nodes: body, end } = parseBlock(["elif", "else", "endif"]);
          branches.push({ cond, body });
          const tag = tags[i++];
          if (end === "endif") break;
          if (end === "elif") {
            cond = parseExpr(tag.body.slice(4).trim());
            continue;
          }
          const tail = parseBlock(["endif"]);
          if (tail.end !== "endif") throw new TemplateError("Unterminated if");
          i++;
          otherwise = tail.nodes;
          break;
        }
        nodes.push({ kind: "if", branches, otherwise });
      }
    }
    if (ends.length > 0) throw new TemplateError(`Missing {% ${ends[ends.length - 1]} %}`);
    return { nodes, end: "" };
  };
  return parseBlock([]).nodes;
}

function tokenizeExpr(src: string): string[] {
  const out: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\d+(?:\.\d+)?|[A-Za-z_][A-Za-z0-9_]*|==|!=|<=|>=|&&|\|\||[<>()[\].,|:!])/y;
  let pos = 0;
  while (pos < src.length) {
    if (/^\s*$/.test(src.slice(pos))) break;
    re.lastIndex = pos;
    const m = re.exec(src);
    if (!m) throw new TemplateError(`Cannot parse expression "${src}"`);
    out.push(m[1]);
    pos = re.lastIndex;
  }
  return out;
}

export function parseExpr(src: string): Expr {
  const toks = tokenizeExpr(src);
  let i = 0;
  const peek = () => toks[i];
  const take = (t?: string) => {
    const tok = toks[i++];
    if (t !== undefined && tok !== t) throw new TemplateError(`Expected "${t}" in "${src}"`);
    return tok;
  };
  const or = (): Expr => {
    let left = and();
    while (peek() === "or" || peek() === "||") {
      take();
      left = { kind: "bin", op: "or", left, right: and() };
    }
    return left;
  };
  const and = (): Expr => {
    let left = not();
    while (peek() === "and" || peek() === "&&") {
      take();
      left = { kind: "bin", op: "and", left, right: not() };
    }
    return left;
  };
  const not = (): Expr => {
    if (peek() === "not" || peek() === "!") {
      take();
      return { kind: "not", expr: not() };
    }
    return cmp();
  };
  const cmp = (): Expr => {
    const left = filtered();
    const op = peek();
    if (op && ["==", "!=", "<", ">", "<=", ">=", "in"].includes(op)) {
      take();
      return { kind: "bin", op, left, right: filtered() };
    }
    return left;
  };
  const filtered = (): Expr => {
    let target = postfix();
    while (peek() === "|") {
      take();
      const name = take();
      let arg: Expr | undefined;
      if (peek() === ":") {
        take();
        arg = postfix();
      }
      target = { kind: "filter", name, target, arg };
    }
    return target;
  };
  const postfix = (): Expr => {
    let e = primary();
    for (;;) {
      if (peek() === ".") {
        take();
        e = { kind: "get", target: e, key: { kind: "lit", value: take() } };
      } else if (peek() === "[") {
        take();
        const key = or();
        take("]");
        e = { kind: "get", target: e, key };
      } else if (peek() === "(") {
        take();
        const args: Expr[] = [];
        while (peek() !== ")") {
          args.push(or());
          if (peek() === ",") take();
          else break;
        }
        take(")");
        e = { kind: "call", fn: e, args };
      } else return e;
    }
  };
  const primary = (): Expr => {
    const t = take();
    if (t === undefined) throw new TemplateError(`Unexpected end of expression "${src}"`);
    if (t === "(") {
      const e = or();
      take(")");
      return e;
    }
    if (t[0] === '"' || t[0] === "'") return { kind: "lit", value: t.slice(1, -1).replace(/\\(.)/g, (_, c) => ({ n: "\n", t: "\t" })[c as "n"] ?? c) };
    if (/^\d/.test(t)) return { kind: "lit", value: Number(t) };
    if (t === "true" || t === "True") return { kind: "lit", value: true };
    if (t === "false" || t === "False") return { kind: "lit", value: false };
    if (t === "nil" || t === "None") return { kind: "lit", value: null };
    if (/^[A-Za-z_]/.test(t)) return { kind: "var", name: t };
    throw new TemplateError(`Unexpected "${t}" in "${src}"`);
  };
  const e = or();
  if (i < toks.length) throw new TemplateError(`Unexpected "${toks[i]}" in "${src}"`);
  return e;
}

// --- evaluation ---

export function truthy(v: Value): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v).length > 0;
  return true;
}

export function display(v: Value): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "function") return "";
  return JSON.stringify(v);
}

const FILTERS: Record<string, (v: Value, arg: Value) => Value> = {
  default: (v, arg) => (truthy(v) ? v : arg),
  lower: (v) => display(v).toLowerCase(),
  upper: (v) => display(v).toUpperCase(),
  trim: (v) => display(v).trim(),
};

function evaluate(e: Expr, ctx: Context): Value {
  switch (e.kind) {
    case "lit":
      return e.value;
    case "var":
      return ctx[e.name];
    case "get": {
      const target = evaluate(e.target, ctx);
      const key = display(evaluate(e.key, ctx));
      if (target && typeof target === "object" && Object.prototype.hasOwnProperty.call(target, key)) return (target as Record<string, Value>)[key];
      return undefined;
    }
    case "call": {
      const fn = evaluate(e.fn, ctx);
      if (typeof fn !== "function") throw new TemplateError("Call of a value that is not a function");
      return fn(...e.args.map((a) => evaluate(a, ctx)));
    }
    case "not":
      return !truthy(evaluate(e.expr, ctx));
    case "filter": {
      const f = FILTERS[e.name];
      if (!f) throw new TemplateError(`Unknown filter "${e.name}"`);
      return f(evaluate(e.target, ctx), e.arg ? evaluate(e.arg, ctx) : undefined);
    }
    case "bin": {
      if (e.op === "and") return truthy(evaluate(e.left, ctx)) && truthy(evaluate(e.right, ctx));
      if (e.op === "or") return truthy(evaluate(e.left, ctx)) || truthy(evaluate(e.right, ctx));
      const l = evaluate(e.left, ctx);
      const r = evaluate(e.right, ctx);
      switch (e.op) {
        case "==":
          return display(l) === display(r);
        case "!=":
          return display(l) !== display(r);
        case "in":
          if (Array.isArray(r)) return r.some((x) => display(x) === display(l));
          if (r && typeof r === "object") return Object.prototype.hasOwnProperty.call(r, display(l));
          return display(r).includes(display(l));
        default: {
          const [a, b] = typeof l === "number" && typeof r === "number" ? [l, r] : [display(l), display(r)];
          return e.op === "<" ? a < b : e.op === ">" ? a > b : e.op === "<=" ? a <= b : a >= b;
        }
      }
    }
  }
}

function renderNodes(nodes: Node[], ctx: Context): string {
  let out = "";
  for (const n of nodes) {
    if (n.kind === "text") out += n.text;
    else if (n.kind === "out") out += display(evaluate(n.expr, ctx));
    else {
      const hit = n.branches.find((b) => truthy(evaluate(b.cond, ctx)));
      out += renderNodes(hit ? hit.body : n.otherwise, ctx);
    }
  }
  return out;
}

export function render(src: string, ctx: Context): string {
  return renderNodes(parseTemplate(src), ctx);
}
