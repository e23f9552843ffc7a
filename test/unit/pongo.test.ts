// The pongo2 subset LXD image templates use.
import { describe, expect, it } from "vitest";
import { render } from "../../src/images/pongo.js";
import { renderTemplate, templateRules, templatesFor } from "../../src/images/templates.js";

const rule = { when: ["create"], create_only: false, template: "t.tpl", properties: { default: "fallback", mode: "x" } };
const ctx = { name: "c1", architecture: "x86_64", config: { "user.foo": "bar\n", "user.network_mode": "link-local" } };

describe("pongo2 subset", () => {
  it("renders variables, properties and config_get", () => {
    expect(renderTemplate("{{ container.name }} {{ instance.name }} {{ instance.type }}", "create", "/etc/x", rule, ctx)).toBe("c1 c1 container");
    expect(renderTemplate('{{ config_get("user.foo", "d") }}|{{ config_get("user.none", "d") }}', "create", "/p", rule, ctx)).toBe("bar|d");
    expect(renderTemplate('{{ config_get("user.none", properties.default) }} {{ properties.mode }}', "create", "/p", rule, ctx)).toBe("fallback x");
    expect(renderTemplate("{{ trigger }} {{ path }} {{ config['user.network_mode'] }}", "rename", "/etc/hosts", rule, ctx)).toBe("rename /etc/hosts link-local");
  });

  it("handles if / elif / else, comparisons and boolean operators", () => {
    const net = '{% if config_get("user.network-config", "") == "" %}type: {% if config_get("user.network_mode", "") == "link-local" %}manual{% else %}dhcp{% endif %}{% else %}{{ config_get("user.network-config", "") }}{% endif %}';
    expect(renderTemplate(net, "create", "/p", rule, ctx)).toBe("type: manual");
    expect(renderTemplate(net, "create", "/p", rule, { ...ctx, config: {} })).toBe("type: dhcp");
    expect(renderTemplate(net, "create", "/p", rule, { ...ctx, config: { "user.network-config": "custom" } })).toBe("custom");
    expect(render("{% if a and not b %}1{% elif b or c %}2{% else %}3{% endif %}", { a: true, b: false })).toBe("1");
    expect(render("{% if a and not b %}1{% elif b or c %}2{% else %}3{% endif %}", { a: true, b: true })).toBe("2");
    expect(render("{% if a != 'x' %}y{% endif %}{# comment #}", { a: "z" })).toBe("y");
    expect(render("{% if 'k' in m %}in{% endif %}", { m: { k: "v" } })).toBe("in");
    expect(render("{{ missing }}|{{ missing|default:'dflt' }}|{{ s|upper }}", { s: "ab" })).toBe("|dflt|AB");
    expect(render("{% autoescape off %}<&>{% endautoescape %}", {})).toBe("<&>");
  });

  it("rejects what it does not implement instead of guessing", () => {
    expect(() => render("{% for x in y %}{% endfor %}", {})).toThrow(/Unsupported template tag "for"/);
    expect(() => render("{% if a %}x", {})).toThrow(/Missing/);
    expect(() => render("{{ a | nosuch }}", {})).toThrow(/Unknown filter/);
  });

  it("selects templates by trigger from metadata.yaml", () => {
    const rules = templateRules(
      "templates:\n  /etc/hostname:\n    when: [create, copy, rename]\n    template: hostname.tpl\n  /etc/hosts:\n    when: [start]\n    create_only: true\n    template: hosts.tpl\n    properties:\n      a: 1\n",
    );
    expect(templatesFor(rules, "copy").map(([p]) => p)).toEqual(["/etc/hostname"]);
    expect(templatesFor(rules, "start")).toEqual([["/etc/hosts", { when: ["start"], create_only: true, template: "hosts.tpl", properties: { a: "1" } }]]);
    expect(templatesFor(templateRules("architecture: x86_64\n"), "create")).toEqual([]);
  });
});
