import assert from "node:assert/strict";
import { interpolateEnv } from "../../src/config/env.ts";

interface Run {
  result: unknown;
  errors: { path: PropertyKey[]; message: string }[];
  values: string[];
}

function run(data: unknown, env: Record<string, string> = {}): Run {
  const errors: Run["errors"] = [];
  const values: string[] = [];
  const result = interpolateEnv(data, (name) => Object.hasOwn(env, name) ? env[name] : undefined, {
    onError: (path, message) => errors.push({ path: [...path], message }),
    onValue: (value) => values.push(value),
  });
  return { result, errors, values };
}

const unset = (name: string) =>
  `environment variable ${name} is not set (use \${${name}:-} to allow it to be empty)`;

Deno.test("${VAR} is replaced by the variable's value", () => {
  const r = run({ token: "${API_KEY}" }, { API_KEY: "sk-secret-123" });
  assert.deepEqual(r.result, { token: "sk-secret-123" });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, ["sk-secret-123"]);
});

Deno.test("${VAR} inside a longer string, and several in one string", () => {
  const r = run("https://${HOST}:${PORT}/v1?k=${HOST}", { HOST: "example.com", PORT: "8443" });
  assert.equal(r.result, "https://example.com:8443/v1?k=example.com");
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, ["example.com", "8443", "example.com"]);
});

Deno.test("${VAR} set to an empty string is empty (no error)", () => {
  const r = run({ a: "x${EMPTY}y" }, { EMPTY: "" });
  assert.deepEqual(r.result, { a: "xy" });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, [""]);
});

Deno.test("${VAR:-default}: unset → default", () => {
  const r = run({ a: "${NOPE:-fallback}" });
  assert.deepEqual(r.result, { a: "fallback" });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, ["fallback"]);
});

Deno.test("${VAR:-default}: empty → default", () => {
  const r = run({ a: "${EMPTY:-fallback}" }, { EMPTY: "" });
  assert.deepEqual(r.result, { a: "fallback" });
  assert.deepEqual(r.values, ["fallback"]);
});

Deno.test("${VAR:-default}: set → the value, not the default", () => {
  const r = run({ a: "${SET:-fallback}" }, { SET: "actual" });
  assert.deepEqual(r.result, { a: "actual" });
  assert.deepEqual(r.values, ["actual"]);
});

Deno.test("${VAR:-} allows an empty value; the default may hold ':' and '-'", () => {
  const r = run(["${NOPE:-}", "${NOPE:-a:-b}", "${NOPE:-http://x:80/}"]);
  assert.deepEqual(r.result, ["", "a:-b", "http://x:80/"]);
  assert.deepEqual(r.errors, []);
});

Deno.test("$$ writes a literal $", () => {
  const r = run(["$$", "a$$b", "$${NOT_A_REF}", "cost: $$5", "$$$${X}"], { NOT_A_REF: "oops" });
  assert.deepEqual(r.result, ["$", "a$b", "${NOT_A_REF}", "cost: $5", "$${X}"]);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, []);
});

Deno.test("a lone $ or $NAME without braces is left alone", () => {
  const r = run(["$", "$HOME", "price $ 5", "a$"], { HOME: "/root" });
  assert.deepEqual(r.result, ["$", "$HOME", "price $ 5", "a$"]);
  assert.deepEqual(r.errors, []);
});

Deno.test("unset ${VAR} without a default: error naming the variable, at the field's path", () => {
  const r = run({
    upstreams: [{ name: "u", auth: { type: "bearer", token: "${OPENAI_API_KEY}" } }],
  });
  assert.deepEqual(r.errors, [
    { path: ["upstreams", 0, "auth", "token"], message: unset("OPENAI_API_KEY") },
  ]);
  assert.deepEqual(r.result, { upstreams: [{ name: "u", auth: { type: "bearer", token: "" } }] });
  assert.deepEqual(r.values, []);
});

Deno.test("each unset variable is its own error", () => {
  const r = run({ a: "${A}-${B}", b: ["${C:-ok}", "${D}"] });
  assert.deepEqual(r.errors, [
    { path: ["a"], message: unset("A") },
    { path: ["a"], message: unset("B") },
    { path: ["b", 1], message: unset("D") },
  ]);
  assert.deepEqual(r.result, { a: "-", b: ["ok", ""] });
});

Deno.test("malformed ${ references are errors", () => {
  const cases: [string, string][] = [
    ["${1ABC}", "${1ABC}"],
    ["${}", "${}"],
    ["${FOO", "${FOO"],
    ["x ${FOO:bar} y", "${FOO:bar}"],
    ["${FOO-bar}", "${FOO-bar}"],
    ["${A B}", "${A B}"],
  ];
  for (const [text, reference] of cases) {
    const r = run({ field: text }, { FOO: "foo", A: "a" });
    assert.deepEqual(r.errors, [{
      path: ["field"],
      message: `invalid reference "${reference}": use \${NAME} or \${NAME:-default}`,
    }], text);
    assert.deepEqual(r.values, [], text);
  }
});

Deno.test("malformed reference is replaced by nothing, the rest of the string kept", () => {
  const r = run("a${}b");
  assert.equal(r.result, "ab");
  assert.equal(r.errors.length, 1);
});

Deno.test("nested arrays and objects are walked; non-strings and keys are untouched", () => {
  const input = {
    "${KEY}": "${V}",
    n: 5,
    b: true,
    z: null,
    list: [1, "${V}", ["${V}", { deep: "${V:-d}" }]],
    obj: { inner: { value: "${V}" } },
  };
  const r = run(input, { V: "val", KEY: "k" });
  assert.deepEqual(r.result, {
    "${KEY}": "val",
    n: 5,
    b: true,
    z: null,
    list: [1, "val", ["val", { deep: "val" }]],
    obj: { inner: { value: "val" } },
  });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, ["val", "val", "val", "val", "val"]);
});

Deno.test("nested error paths include array indexes", () => {
  const r = run({ list: [["ok", { deep: "${MISSING}" }]] });
  assert.deepEqual(r.errors, [{ path: ["list", 0, 1, "deep"], message: unset("MISSING") }]);
});

Deno.test("the input is not modified", () => {
  const input = { a: "${V}", list: ["${V}"] };
  const r = run(input, { V: "x" });
  assert.deepEqual(input, { a: "${V}", list: ["${V}"] });
  assert.notEqual(r.result, input);
});

Deno.test("strings without $ are returned as they are and report nothing", () => {
  const r = run({ a: "plain", b: "{braces}" });
  assert.deepEqual(r.result, { a: "plain", b: "{braces}" });
  assert.deepEqual(r.values, []);
  assert.deepEqual(r.errors, []);
});

Deno.test("a substituted value is not interpolated again", () => {
  const r = run("${A}", { A: "${B}", B: "no" });
  assert.equal(r.result, "${B}");
  assert.deepEqual(r.values, ["${B}"]);
});
