import assert from "node:assert/strict";
import { withTempFile } from "../_helpers/temp_file.ts";
import {
  CHILD_ENV,
  childCommand,
  childOutput,
  fromChildOutput,
  loadConfig,
} from "../../src/config/isolated.ts";
import { ConfigError } from "../../src/config/errors.ts";
import { loadConfigFile, parseConfig } from "../../src/config/load.ts";

const ROOT = new URL("../../", import.meta.url);
const DEFAULT_TEXT = await Deno.readTextFile(new URL("config.default.yaml", ROOT));
const PROGRAM = { embedded: { text: DEFAULT_TEXT, label: "<embedded>" }, version: "9.9.9" };
const env = (name: string) => Deno.env.get(name);

/** Every feature that leaves a value in the config: the JSON trip must keep all of them. */
const RICH = `httpServer:
  maxBodySize: 2MiB
  bodyTimeout: 45s
  shutdownTimeout: 12s
  trustedProxies: ["10.0.0.0/8", "::1"]
  forwards:
    - name: api
      port: 0
      address: 127.0.0.1
      defaultGroup: pool
      ratelimit: {perSecond: 5.5, burst: 20}
      routing:
        - {path: "/v1/embeddings", targetGroup: pool}
  admin: {port: 0, address: 127.0.0.1, token: "admin-secret-value"}
upstreams:
  - name: a
    url: "http://127.0.0.1:9/v1/chat/completions"
    auth: {type: bearer, token: "sk-\${ISOLATED_TEST_TOKEN:-fallback-token-value}"}
    breaker: {threshold: 0.5, cooldown: 30, maxRequests: 3, interval: 10, minRequests: 10}
    ratelimit: {perSecond: 100, burst: 100}
    headers:
      - {op: insert, key: X-Team, value: "search"}
      - {op: remove, key: X-Debug}
  - name: b
    url: "https://api.example.com/v1/"
    auth: {type: basic, username: "user", password: "pass-word-value"}
    path: {mode: append, rewrite: [{match: "^/api/(.*)$", replace: "/$1"}]}
upstreamGroups:
  - name: pool
    upstreams: [{name: a}, {name: b, weight: 2}]
    balance: {strategy: weighted_roundrobin}
    httpClient:
      agent: "llmproxy-test/1"
      keepalive: 30s
      connect: {idlePerHost: 7}
      timeout: {connect: 2s, firstByte: 20s, streamIdle: 40s, request: 90s, idle: 50s}
      retry: {attempts: 2, initial: 250, budget: 20s}
      proxy: {url: "http://user:proxy-pass@127.0.0.1:3128"}
`;

/** Drops keys whose value is undefined: JSON cannot carry them, and they mean "absent". */
function withoutUndefined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutUndefined);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).filter(([, v]) => v !== undefined).map((
        [k, v],
      ) => [k, withoutUndefined(v)]),
    );
  }
  return value;
}

Deno.test("the embedded default config is the same after the JSON trip from the child", async () => {
  const direct = parseConfig(DEFAULT_TEXT, PROGRAM.embedded.label, env);
  const carried = fromChildOutput(await childOutput({ path: undefined }, PROGRAM), PROGRAM.version);
  assert.deepEqual(withoutUndefined(carried.config), withoutUndefined(direct.config));
  assert.equal(carried.source, direct.source);
  assert.deepEqual(carried.interpolatedValues, direct.interpolatedValues);
  assert.deepEqual(carried.warnings, direct.warnings);
});

Deno.test("a config using every feature is the same after the JSON trip (no value lost or changed)", async () => {
  await withTempFile(RICH, async (path) => {
    const direct = await loadConfigFile(path, env);
    const carried = fromChildOutput(await childOutput({ path }, PROGRAM), PROGRAM.version);
    // A value JSON cannot represent (Infinity, NaN, a Map, a RegExp) would differ here.
    assert.deepEqual(withoutUndefined(carried.config), withoutUndefined(direct.config));
    assert.deepEqual(JSON.parse(JSON.stringify(direct.config)), withoutUndefined(direct.config));
    assert.ok(carried.interpolatedValues.has("fallback-token-value"));
  });
});

Deno.test("config errors come back from the child with the same file, lines and messages", async () => {
  const broken = RICH.replace("weight: 2", "weight: many").replace("port: 0\n", "port: -1\n");
  await withTempFile(broken, async (path) => {
    const direct = await loadConfigFile(path, env).then(
      () => assert.fail("expected a ConfigError"),
      (error: unknown) => error as ConfigError,
    );
    assert.ok(direct instanceof ConfigError);
    const output = await childOutput({ path }, PROGRAM);
    assert.throws(() => fromChildOutput(output, PROGRAM.version), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.file, direct.file);
      assert.deepEqual(error.issues, direct.issues);
      assert.equal(error.message, direct.message);
      return true;
    });
  });
});

Deno.test("childCommand(): this program again, with read and env only", () => {
  // The tests run with --allow-run, --allow-read and --allow-env, so the child can be started.
  const command = childCommand();
  assert.ok(command);
  assert.equal(command[0], Deno.execPath());
  assert.ok(command.includes("--allow-read") && command.includes("--allow-env"));
  assert.ok(!command.some((arg) => arg.startsWith("--allow-net") || arg === "-A"));
  assert.equal(command.at(-1), Deno.mainModule);
});

Deno.test("fromChildOutput(): junk, another shape or another version is refused, not trusted", () => {
  const good = JSON.stringify({
    ok: true,
    version: "1.0.0",
    config: {},
    source: "x",
    interpolatedValues: ["sk-secret-value"],
    warnings: [],
  });
  assert.equal(fromChildOutput(good, "1.0.0").source, "x");
  assert.throws(() => fromChildOutput(good, "1.0.1"), /version 1\.0\.0, this process 1\.0\.1/);
  // The parser's message would quote the output; the error must not.
  const cut = good.slice(0, -5);
  assert.throws(() => fromChildOutput(cut, "1.0.0"), (error: unknown) => {
    assert.equal((error as Error).message, "its output is not a config");
    return true;
  });
  assert.throws(() => fromChildOutput("[1]", "1.0.0"), /not a config/);
  assert.throws(() => fromChildOutput("", "1.0.0"), /not a config/);
});

Deno.test("loadConfig(): a child without an answer → loaded in-process, with a warning", async () => {
  // Deno.mainModule is this test file: started as a loader it fails (its imports need the
  // import map of the project root), as a broken program would. The config still loads,
  // in-process, and the warning says why.
  await withTempFile(RICH, async (path) => {
    const result = await loadConfig({ path }, env, PROGRAM);
    assert.equal(result.isolated, false);
    const direct = await loadConfigFile(path, env);
    assert.deepEqual(result.loaded.config, direct.config);
    assert.match(
      result.loaded.warnings.at(-1)!,
      /^config loaded in-process: the config loader process failed: exit 1: error: /,
    );
  });
});

Deno.test("the program as a config loader prints the config that loads in-process", async () => {
  // Run the real program, as main.ts starts itself.
  const main = new URL("main.ts", ROOT).pathname;
  await withTempFile(RICH, async (path) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", main],
      env: { [CHILD_ENV]: JSON.stringify({ path }) },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    const version = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).version;
    const carried = fromChildOutput(new TextDecoder().decode(output.stdout), version);
    const direct = await loadConfigFile(path, env);
    assert.deepEqual(withoutUndefined(carried.config), withoutUndefined(direct.config));
  });
});
