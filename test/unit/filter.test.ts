// `?filter=` as LXD 5.0.2's lxd/filter parses and matches it (cases from its match_test.go and clause_test.go, plus
// the case-insensitive, regular-expression value matching of filter.Match).
import { describe, expect, it } from "vitest";
import { matchFilter, parseFilter } from "../../src/shared/filter.js";

const matches = (v: unknown, f: string) => matchFilter(v, parseFilter(f));

const instance = {
  architecture: "x86_64",
  config: { "image.os": "BusyBox" },
  created_at: "2020-01-29T11:10:32Z",
  name: "c1",
  ephemeral: false,
  expanded_config: { "image.os": "BusyBox" },
  expanded_devices: { root: { path: "/", pool: "default", type: "disk" } },
  status: "Running",
  status_code: 103,
};

describe("filter matching", () => {
  it("evaluates LXD's instance cases", () => {
    expect(matches(instance, "architecture eq x86_64")).toBe(true);
    expect(matches(instance, "architecture eq i686")).toBe(false);
    expect(matches(instance, "name eq c1 and status eq Running")).toBe(true);
    expect(matches(instance, "config.image.os eq BusyBox and expanded_devices.root.path eq /")).toBe(true);
    expect(matches(instance, "name eq c2 or status eq Running")).toBe(true);
    expect(matches(instance, "name eq c2 or name eq c3")).toBe(false);
    expect(matches(instance, "name eq c1 and status ne Running")).toBe(false);
    expect(matches({ properties: { os: "Ubuntu" }, architecture: "i686", public: true }, "properties.os eq Ubuntu")).toBe(true);
  });

  it("compares string values case-insensitively", () => {
    expect(matches(instance, "status eq running")).toBe(true);
    expect(matches(instance, "status eq RUNNING")).toBe(true);
    expect(matches(instance, "config.image.os eq busybox")).toBe(true);
    expect(matches(instance, "status ne running")).toBe(false);
    expect(matches(instance, "not status eq running")).toBe(false);
    expect(matches(instance, "status eq stopped")).toBe(false);
  });

  it("reads values as regular expressions, anchored unless they hold ^ or $", () => {
    expect(matches(instance, "name eq c.")).toBe(true);
    expect(matches(instance, "name eq c")).toBe(false);
    expect(matches(instance, "name eq ^c")).toBe(true);
    expect(matches(instance, "status eq ing$")).toBe(true);
    // As upstream the anchors bind to the first and last alternatives: ^run|stop$.
    expect(matches(instance, "status eq run|stop")).toBe(true);
    expect(matches(instance, "status eq unn|stop")).toBe(false);
    expect(matches(instance, "status eq (runn|stopp)ing")).toBe(true);
    // Not an expression: compared as text, still ignoring case.
    expect(matches({ name: "a(b" }, "name eq A(B")).toBe(true);
    expect(matches({ name: "a(b" }, "name eq a(c")).toBe(false);
  });

  it("never equates a field that is no string in LXD's types", () => {
    expect(matches(instance, "ephemeral eq false")).toBe(false);
    expect(matches(instance, "ephemeral ne false")).toBe(true);
    expect(matches(instance, "status_code eq 103")).toBe(false);
    expect(matches(instance, "created_at eq 2020-01-29T11:10:32Z")).toBe(false);
    expect(matches(instance, "expanded_devices eq x")).toBe(false);
    expect(matches(instance, "nosuch eq x")).toBe(false);
    expect(matches(instance, "nosuch ne x")).toBe(true);
    // A config key that ends in _at is a string of a map.
    expect(matches({ config: { "user.created_at": "now" } }, "config.user.created_at eq NOW")).toBe(true);
  });

  it("treats every operator but ne as equality, as upstream (it checks none)", () => {
    expect(matches(instance, "name is c1")).toBe(true);
    expect(matches(instance, "name NE c1")).toBe(true);
  });
});

describe("filter parsing", () => {
  it("parses clauses with not, and, or and quoted values with spaces", () => {
    expect(parseFilter("name eq c1 and not status eq Running or description eq \"a b  c\"")).toEqual([
      { prev: "and", not: false, field: "name", op: "eq", value: "c1" },
      { prev: "and", not: true, field: "status", op: "eq", value: "Running" },
      { prev: "or", not: false, field: "description", op: "eq", value: "a b c" },
    ]);
    expect(parseFilter("   ")).toEqual([]);
  });

  it("fails as LXD: a 500 naming what is wrong", () => {
    const cases: [string, string][] = [
      ["not", "incomplete not clause"],
      ["name", "clause has no operator"],
      ["name eq", "clause has no value"],
      ['name eq "c1', "unterminated quote"],
      // Upstream looks for the closing quote from the next word on.
      ['name eq "c1"', "unterminated quote"],
      ["name eq c1 xor status eq Running", "invalid clause composition"],
      ["name eq c1 AND status eq Running", "invalid clause composition"],
      ["name eq c1 and", "unterminated compound clause"],
    ];
    for (const [text, why] of cases) {
      let err: { status?: number; message?: string } = {};
      try {
        parseFilter(text);
      } catch (e) {
        err = e as typeof err;
      }
      expect([text, err.status, err.message]).toEqual([text, 500, `Invalid filter: ${why}`]);
    }
  });
});
