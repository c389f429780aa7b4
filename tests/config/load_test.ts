import assert from "node:assert/strict";
import { parseDocument } from "yaml";
import {
  ConfigError,
  type ConfigIssue,
  formatIssue,
  loadConfigFile,
  type LoadedConfig,
  parseConfig,
} from "../../src/config/load.ts";
import { effectivePathMode } from "../../src/config/schema.ts";

const FILE = "c.yaml";
const ROOT = new URL("../../", import.meta.url);

function envOf(vars: Record<string, string> = {}): (name: string) => string | undefined {
  return (name) => Object.hasOwn(vars, name) ? vars[name] : undefined;
}

function load(text: string, env: Record<string, string> = {}): LoadedConfig {
  return parseConfig(text, FILE, envOf(env));
}

function configError(text: string, env: Record<string, string> = {}): ConfigError {
  try {
    load(text, env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  assert.fail("expected a ConfigError");
}

/** The formatted error lines for `text`. */
function errorLines(text: string, env: Record<string, string> = {}): string[] {
  const error = configError(text, env);
  assert.equal(error.file, FILE);
  assert.equal(error.name, "ConfigError");
  assert.doesNotMatch(error.message, /\n\s+at /);
  return error.message.split("\n");
}

/** `c.yaml:line:col` of the `nth` (1-based) occurrence of `needle` in `text`, plus `shift`. */
function pos(text: string, needle: string, nth = 1, shift = 0): string {
  let index = -1;
  for (let i = 0; i < nth; i++) {
    index = text.indexOf(needle, index + 1);
    assert.ok(index >= 0, `"${needle}" (occurrence ${nth}) not in the text`);
  }
  const before = text.slice(0, index + shift).split("\n");
  return `${FILE}:${before.length}:${before.at(-1)!.length + 1}`;
}

function assertSortedByPosition(lines: readonly string[]): void {
  const positions = lines.map((line) => {
    const match = /^c\.yaml:(\d+):(\d+)[ :]/.exec(line);
    assert.ok(match, line);
    return [Number(match[1]), Number(match[2])] as const;
  });
  const sorted = [...positions].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  assert.deepEqual(positions, sorted);
}

/** `text` with `from` (which must occur exactly once) replaced by `to`. */
function edit(text: string, from: string, to: string): string {
  assert.equal(text.split(from).length, 2, `"${from}" must occur once`);
  return text.replace(from, to);
}

const BASE = `httpServer:
  forwards:
    - name: f1
      port: 3000
      defaultGroup: g1
upstreams:
  - name: u1
    url: "https://api.example.com/v1"
upstreamGroups:
  - name: g1
    upstreams:
      - name: u1
`;

// ---------------------------------------------------------------------------------------------
// Valid configs

Deno.test("the embedded config.default.yaml parses with an empty env, with four warnings", async () => {
  const text = await Deno.readTextFile(new URL("config.default.yaml", ROOT));
  const loaded = parseConfig(text, "<embedded config.default.yaml>", envOf());
  assert.equal(loaded.source, "<embedded config.default.yaml>");
  assert.deepEqual(loaded.warnings, [
    'upstream "openai_primary" has an empty bearer credential: its provider will likely refuse requests (401)',
    'upstream "openai_api" has an empty bearer credential: its provider will likely refuse requests (401)',
    'client key "default" is empty: nobody can present it (set its variable, e.g. LLMPROXY_KEY)',
    'no client key can be presented: forwards "to_mixgroup" answer 401 to every request',
  ]);
  assert.deepEqual([...loaded.interpolatedValues], []);
  assert.deepEqual(loaded.config.clientKeys, [{ name: "default", key: "" }]);
  const { config } = loaded;
  assert.deepEqual(config.httpServer.forwards.map((f) => f.name), ["to_mixgroup"]);
  assert.deepEqual(config.upstreams.map((u) => u.name), ["openai_primary", "openai_api"]);
  assert.deepEqual(config.upstreamGroups.map((g) => g.name), ["mixgroup", "openai"]);
  assert.equal(config.httpServer.maxBodySize, 32 * 1024 * 1024);
  assert.equal(config.httpServer.admin?.token, "");
  assert.equal(config.upstreamGroups[1]!.balance.strategy, "failover");
  assert.deepEqual(config.upstreams[0]!.breaker, {
    threshold: 0.5,
    cooldown: 30_000,
    maxRequests: 3,
    interval: 10_000,
    minRequests: 10,
  });
});

Deno.test("the embedded default with credentials set: no warnings, values recorded", async () => {
  const text = await Deno.readTextFile(new URL("config.default.yaml", ROOT));
  const loaded = parseConfig(
    text,
    "x",
    envOf({
      OPENAI_API_KEY: "sk-test-0123456789",
      ADMIN_TOKEN: "admintoken",
      LLMPROXY_KEY: "sk-client-0123456789",
    }),
  );
  assert.deepEqual(loaded.warnings, []);
  assert.deepEqual([...loaded.interpolatedValues].sort(), [
    "admintoken",
    "sk-client-0123456789",
    "sk-test-0123456789",
  ]);
  const auth = loaded.config.upstreams[0]!.auth;
  assert.deepEqual(auth, { type: "bearer", token: "sk-test-0123456789" });
});

// README.md may not exist yet. When it does, every ```yaml block in it must parse: a block
// holding a whole config (it has a top-level `httpServer:`) must pass validation, with every
// ${VAR} it names set to a dummy value; any other block (a fragment) must be valid YAML.
const README = new URL("README.md", ROOT);
const readmeExists = (() => {
  try {
    return Deno.statSync(README).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "every ```yaml block in README.md parses",
  ignore: !readmeExists,
  fn: async () => {
    const text = await Deno.readTextFile(README);
    const blocks = [...text.matchAll(/^```yaml[ \t]*\n([\s\S]*?)^```/gm)].map((m) => ({
      body: m[1]!,
      line: text.slice(0, m.index).split("\n").length,
    }));
    for (const { body, line } of blocks) {
      const where = `README.md block at line ${line}`;
      if (/^httpServer:/m.test(body)) {
        const env: Record<string, string> = {};
        for (const m of body.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)) {
          env[m[1]!] = "dummy-value-for-readme";
        }
        try {
          parseConfig(body, where, envOf(env));
        } catch (error) {
          assert.fail(`${where} is not a valid config:\n${(error as Error).message}`);
        }
      } else {
        const doc = parseDocument(body, { uniqueKeys: true });
        assert.deepEqual(doc.errors.map((e) => e.message), [], where);
      }
    }
  },
});

Deno.test("defaults are filled in (durations in ms, sizes in bytes)", () => {
  const { config } = load(
    edit(BASE, "      defaultGroup: g1\n", "      defaultGroup: g1\n  admin:\n    port: 9000\n"),
  );
  const server = config.httpServer;
  assert.equal(server.maxBodySize, 33_554_432);
  assert.equal(server.shutdownTimeout, 30_000);
  assert.deepEqual(server.trustedProxies, []);
  assert.deepEqual(server.admin, { port: 9000, address: "127.0.0.1" });
  assert.deepEqual(server.forwards[0], {
    name: "f1",
    port: 3000,
    address: "0.0.0.0",
    defaultGroup: "g1",
    routing: [],
  });
  const u = config.upstreams[0]!;
  assert.deepEqual(u.path, { rewrite: [] }); // mode left unset: see effectivePathMode
  assert.deepEqual(u.auth, { type: "none" });
  assert.deepEqual(u.headers, []);
  assert.equal(u.ratelimit, undefined);
  assert.deepEqual(u.breaker, {
    threshold: 0.5,
    cooldown: 30_000,
    maxRequests: 1,
    interval: 10_000,
    minRequests: 10,
  });
  const g = config.upstreamGroups[0]!;
  assert.deepEqual(g.upstreams, [{ name: "u1", weight: 1 }]);
  assert.equal(g.balance.strategy, "roundrobin");
  assert.deepEqual(g.httpClient, {
    agent: "LLMProxy/1.0",
    keepalive: 60_000,
    connect: { idlePerHost: 256 },
    timeout: {
      connect: 10_000,
      firstByte: 60_000,
      streamIdle: 60_000,
      request: 300_000,
      idle: 60_000,
    },
    retry: { attempts: 3, initial: 500, budget: 60_000 },
  });
  assert.equal(g.httpClient.proxy, undefined);
});

Deno.test("durations: units, bare seconds, and retry.initial in bare milliseconds", () => {
  const { config } = load(
    BASE.replace(
      "httpServer:\n",
      'httpServer:\n  shutdownTimeout: "5m"\n  maxBodySize: "512KiB"\n',
    ) +
      `    httpClient:
      keepalive: 0
      timeout: {connect: "250ms", firstByte: 2, streamIdle: "1.5s", request: "1h", idle: 0.5}
      retry: {initial: 200, budget: "2s"}
`,
  );
  assert.equal(config.httpServer.shutdownTimeout, 300_000);
  assert.equal(config.httpServer.maxBodySize, 524_288);
  const client = config.upstreamGroups[0]!.httpClient;
  assert.equal(client.keepalive, 0);
  assert.deepEqual(client.timeout, {
    connect: 250,
    firstByte: 2_000,
    streamIdle: 1_500,
    request: 3_600_000,
    idle: 500,
  });
  assert.equal(client.retry.initial, 200);
  assert.equal(client.retry.budget, 2_000);
  assert.equal(client.retry.attempts, 3);
});

Deno.test("all balance strategies are accepted", () => {
  for (
    const strategy of [
      "roundrobin",
      "weighted_roundrobin",
      "random",
      "response_aware",
      "failover",
      "iphash",
    ]
  ) {
    const { config } = load(BASE + `    balance: {strategy: ${strategy}}\n`);
    assert.equal(config.upstreamGroups[0]!.balance.strategy, strategy);
  }
});

Deno.test("auth kinds, headers and proxy URL are kept", () => {
  const text = `httpServer:
  forwards: [{name: f1, port: 3000, defaultGroup: g1}]
upstreams:
  - name: u1
    url: "https://a.example/v1"
    auth: {type: basic, username: "\${USER}", password: "\${PASS}"}
    headers:
      - {op: insert, key: X-A, value: "1"}
      - {op: replace, key: X-B, value: ""}
      - {op: remove, key: X-C}
upstreamGroups:
  - name: g1
    upstreams: [{name: u1, weight: 3}]
    httpClient: {proxy: {url: "socks5://proxy.internal:1080"}}
`;
  const { config, interpolatedValues } = load(text, { USER: "alice", PASS: "hunter2-long" });
  const u = config.upstreams[0]!;
  assert.deepEqual(u.auth, { type: "basic", username: "alice", password: "hunter2-long" });
  assert.deepEqual(u.headers, [
    { op: "insert", key: "X-A", value: "1" },
    { op: "replace", key: "X-B", value: "" },
    { op: "remove", key: "X-C" },
  ]);
  assert.deepEqual(config.upstreamGroups[0]!.upstreams, [{ name: "u1", weight: 3 }]);
  assert.deepEqual(config.upstreamGroups[0]!.httpClient.proxy, {
    url: "socks5://proxy.internal:1080",
  });
  assert.deepEqual([...interpolatedValues].sort(), ["alice", "hunter2-long"]);
});

Deno.test("empty basic credentials produce a warning", () => {
  const text = edit(
    BASE,
    "    url:",
    '    auth: {type: basic, username: "", password: p}\n    url:',
  );
  assert.deepEqual(load(text).warnings, [
    'upstream "u1" has an empty basic credential: its provider will likely refuse requests (401)',
  ]);
});

Deno.test("port 0 may be used by several listeners", () => {
  const text = `httpServer:
  forwards:
    - {name: f1, port: 0, defaultGroup: g1}
    - {name: f2, port: 0, defaultGroup: g1}
  admin: {port: 0}
upstreams: [{name: u1, url: "http://127.0.0.1:8080"}]
upstreamGroups: [{name: g1, upstreams: [{name: u1}]}]
`;
  assert.equal(load(text).config.httpServer.forwards.length, 2);
});

// ---------------------------------------------------------------------------------------------
// Errors: each names the field and the line

Deno.test("unknown key with a close match: did you mean", () => {
  const text = edit(
    BASE,
    "      defaultGroup: g1\n",
    "      defaultGroup: g1\n      defautGroup: g1\n",
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "defautGroup")
    } httpServer.forwards.0.defautGroup: unknown key "defautGroup" (did you mean "defaultGroup"?)`,
  ]);
});

Deno.test("unknown key at the root lists the allowed keys", () => {
  const text = BASE + "extras: []\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "extras")
    } extras: unknown key "extras" (allowed: httpServer, upstreams, upstreamGroups, clientKeys, state, workers)`,
  ]);
});

Deno.test("unknown key at the root with a close match", () => {
  const text = BASE + "upstream_groups: []\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "upstream_groups")
    } upstream_groups: unknown key "upstream_groups" (did you mean "upstreamGroups"?)`,
  ]);
});

Deno.test("unknown key far from any known key lists the allowed keys", () => {
  const text = BASE + "    balance: {strategy: random, zzzzzzzz: 1}\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "zzzzzzzz")
    } upstreamGroups.0.balance.zzzzzzzz: group "g1": unknown key "zzzzzzzz" (allowed: strategy)`,
  ]);
});

Deno.test("unknown key repeating its parent's name points at itself", () => {
  const text = BASE + "    httpClient:\n      timeout:\n        connect: 5\n        timeout: 5\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "timeout:", 2)
    } upstreamGroups.0.httpClient.timeout.timeout: group "g1": unknown key "timeout" (allowed: connect, firstByte, streamIdle, request, idle)`,
  ]);
});

Deno.test("unknown key inside auth suggests a key of the auth kinds", () => {
  const text = edit(BASE, "    url:", "    auth: {type: none, tokn: x}\n    url:");
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "tokn")
    } upstreams.0.auth.tokn: upstream "u1": unknown key "tokn" (did you mean "token"?)`,
  ]);
});

Deno.test("wrong type is not reported as missing", () => {
  const text = edit(BASE, "port: 3000", 'port: "abc"');
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"abc"')
    } httpServer.forwards.0.port: forward "f1": Invalid input: expected number, received string`,
  ]);
});

Deno.test("wrong type of a string field", () => {
  const text = edit(BASE, '    url: "https://api.example.com/v1"', "    url: [a, b]");
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "[a, b]")
    } upstreams.0.url: upstream "u1": Invalid input: expected string, received array`,
  ]);
});

Deno.test("missing required field", () => {
  const text = edit(BASE, "      defaultGroup: g1\n", "");
  // The error sits at the forward (its first key), the nearest node that exists.
  assert.deepEqual(errorLines(text), [
    `${pos(text, "name: f1")} httpServer.forwards.0.defaultGroup: forward "f1": is required`,
  ]);
});

Deno.test("missing top-level sections", () => {
  const text = "httpServer:\n  forwards:\n    - {name: f1, port: 1, defaultGroup: g}\n";
  assert.deepEqual(errorLines(text), [
    `${FILE}:1:1 upstreams: is required`,
    `${FILE}:1:1 upstreamGroups: is required`,
  ]);
});

Deno.test("an empty file reports every missing section", () => {
  assert.deepEqual(errorLines(""), [
    `${FILE}:1:1 httpServer: is required`,
    `${FILE}:1:1 upstreams: is required`,
    `${FILE}:1:1 upstreamGroups: is required`,
  ]);
});

Deno.test("missing bearer token", () => {
  const text = edit(BASE, "    url:", "    auth: {type: bearer}\n    url:");
  assert.deepEqual(errorLines(text), [
    // At the auth mapping, the nearest node that exists.
    `${pos(text, "{type: bearer}")} upstreams.0.auth.token: upstream "u1": is required`,
  ]);
});

Deno.test("unknown auth type", () => {
  const text = edit(BASE, "    url:", "    auth: {type: oauth}\n    url:");
  const lines = errorLines(text);
  assert.equal(lines.length, 1);
  assert.ok(
    lines[0]!.startsWith(`${pos(text, "oauth")} upstreams.0.auth.type: upstream "u1": `),
    lines[0],
  );
  assert.match(lines[0]!, /'none' \| 'bearer' \| 'basic'/);
});

Deno.test("empty upstreams list", () => {
  const text = "httpServer:\n  forwards: []\nupstreams: []\nupstreamGroups: []\n";
  const lines = errorLines(text);
  assert.deepEqual(lines.map((l) => l.split(": ")[0]), [
    `${pos(text, "[]", 1)} httpServer.forwards`,
    `${pos(text, "[]", 2)} upstreams`,
    `${pos(text, "[]", 3)} upstreamGroups`,
  ]);
});

Deno.test("duplicate upstream, group and forward names", () => {
  const text = `httpServer:
  forwards:
    - name: f1
      port: 3000
      defaultGroup: g1
    - name: f1
      port: 3001
      defaultGroup: g1
upstreams:
  - name: u1
    url: "https://a.example/v1"
  - name: u1
    url: "https://b.example/v1"
upstreamGroups:
  - name: g1
    upstreams: [{name: u1}]
  - name: g1
    upstreams: [{name: u1}]
`;
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "f1", 2)
    } httpServer.forwards.1.name: forward "f1": duplicate forward name "f1" (also at index 0)`,
    `${
      pos(text, "u1", 2)
    } upstreams.1.name: upstream "u1": duplicate upstream name "u1" (also at index 0)`,
    `${
      pos(text, "g1", 4)
    } upstreamGroups.1.name: group "g1": duplicate group name "g1" (also at index 0)`,
  ]);
});

Deno.test("duplicate ports: forward vs forward", () => {
  const text = edit(
    BASE,
    "      defaultGroup: g1\n",
    "      defaultGroup: g1\n    - name: f2\n      port: 3000\n      defaultGroup: g1\n",
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "3000", 2)
    } httpServer.forwards.1.port: forward "f2": port 3000 is already used by httpServer.forwards.0.port`,
  ]);
});

Deno.test("duplicate ports: forward vs admin", () => {
  const text = edit(
    BASE,
    "      defaultGroup: g1\n",
    "      defaultGroup: g1\n  admin:\n    port: 3000\n",
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "3000", 2)
    } httpServer.admin.port: port 3000 is already used by httpServer.forwards.0.port`,
  ]);
});

Deno.test("port out of range", () => {
  const text = edit(BASE, "port: 3000", "port: 70000");
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "70000")
    } httpServer.forwards.0.port: forward "f1": Too big: expected number to be <=65535`,
  ]);
});

Deno.test("unknown defaultGroup", () => {
  const text = edit(BASE, "defaultGroup: g1", "defaultGroup: nope");
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "nope")
    } httpServer.forwards.0.defaultGroup: forward "f1": unknown group "nope" (groups: g1)`,
  ]);
});

Deno.test("unknown targetGroup", () => {
  const text = edit(
    BASE,
    "      defaultGroup: g1\n",
    "      defaultGroup: g1\n      routing:\n        - path: /v1/*\n          targetGroup: other\n",
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "other")
    } httpServer.forwards.0.routing.0.targetGroup: forward "f1": unknown group "other" (groups: g1)`,
  ]);
});

Deno.test("unknown upstream in a group", () => {
  const text = BASE + "      - name: u9\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "u9")
    } upstreamGroups.0.upstreams.1.name: group "g1": upstream "u9": unknown upstream "u9" (upstreams: u1)`,
  ]);
});

Deno.test("an upstream listed twice in a group", () => {
  const text = BASE + "      - name: u1\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "u1", 3)
    } upstreamGroups.0.upstreams.1.name: group "g1": upstream "u1": upstream "u1" is listed twice`,
  ]);
});

Deno.test("weight 0", () => {
  const text = BASE + "        weight: 0\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "weight: 0", 1, "weight: ".length)
    } upstreamGroups.0.upstreams.0.weight: group "g1": upstream "u1": Too small: expected number to be >=1`,
  ]);
});

for (
  const [label, url, message] of [
    [
      "unparseable",
      "not a url",
      'invalid URL "not a url": expected e.g. "https://api.openai.com/v1"',
    ],
    ["ftp scheme", "ftp://files.example/v1", 'URL "ftp://files.example/v1" must use http or https'],
    // http(s) URLs always have a host in WHATWG parsing: "http://" does not parse at all.
    ["no host", "http://", 'invalid URL "http://": expected e.g. "https://api.openai.com/v1"'],
    [
      "no host (path only)",
      "/v1/chat",
      'invalid URL "/v1/chat": expected e.g. "https://api.openai.com/v1"',
    ],
    [
      "credentials",
      "https://user:pw@api.example.com/v1",
      "put credentials in auth, not in the URL",
    ],
    [
      "fragment",
      "https://api.example.com/v1#x",
      'URL "https://api.example.com/v1#x" must not have a #fragment',
    ],
  ] as const
) {
  Deno.test(`bad upstream URL: ${label}`, () => {
    const text = edit(BASE, "https://api.example.com/v1", url);
    assert.deepEqual(errorLines(text), [
      `${pos(text, `"${url}"`)} upstreams.0.url: upstream "u1": ${message}`,
    ]);
  });
}

Deno.test("path.rewrite with a URL naming a path (mode defaults to replace) is an error", () => {
  const text = edit(
    BASE,
    '    url: "https://api.example.com/v1"\n',
    '    url: "https://api.example.com/v1"\n    path:\n      rewrite: [{match: "^/a", replace: "/b"}]\n',
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "[{")
    } upstreams.0.path.rewrite: upstream "u1": path.rewrite needs path.mode: append`,
  ]);
});

Deno.test("path.rewrite with explicit mode replace is an error", () => {
  const text = edit(
    BASE,
    '    url: "https://api.example.com/v1"\n',
    '    url: "https://api.example.com/"\n    path:\n      mode: replace\n      rewrite:\n        - {match: "^/a", replace: "/b"}\n',
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "- {match")
    } upstreams.0.path.rewrite: upstream "u1": path.rewrite needs path.mode: append`,
  ]);
});

Deno.test("path.rewrite is allowed with an origin URL, a trailing slash, or mode append", () => {
  for (
    const [url, mode] of [
      ["https://api.example.com", ""],
      ["https://api.example.com/", ""],
      ["https://api.example.com/v1/", ""],
      ["https://api.example.com/v1", "mode: append, "],
    ]
  ) {
    const text = edit(
      BASE,
      '    url: "https://api.example.com/v1"\n',
      `    url: "${url}"\n    path: {${mode}rewrite: [{match: "^/v1/(.*)", replace: "/$1"}]}\n`,
    );
    const u = load(text).config.upstreams[0]!;
    assert.deepEqual(u.path.rewrite, [{ match: "^/v1/(.*)", replace: "/$1" }], url);
    assert.equal(effectivePathMode(u), "append", url);
  }
});

Deno.test("invalid rewrite regex", () => {
  const text = edit(
    BASE,
    '    url: "https://api.example.com/v1"\n',
    '    url: "https://api.example.com"\n    path:\n      rewrite:\n        - match: "(unclosed"\n          replace: x\n',
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"(unclosed"')
    } upstreams.0.path.rewrite.0.match: upstream "u1": invalid regex: Invalid regular expression: /(unclosed/: Unterminated group`,
  ]);
});

function withRoutes(...rules: string[]): string {
  return edit(
    BASE,
    "      defaultGroup: g1\n",
    "      defaultGroup: g1\n      routing:\n" +
      rules.map((r) => `        - {path: "${r}", targetGroup: g1}\n`).join(""),
  );
}

Deno.test("invalid route pattern: bad regex in {name:regex}", () => {
  const text = withRoutes("/v1/{model:[a-z}");
  const lines = errorLines(text);
  assert.equal(lines.length, 1);
  const prefix = `${
    pos(text, '"/v1/{model')
  } httpServer.forwards.0.routing.0.path: forward "f1": invalid pattern "/v1/{model:[a-z}": invalid regex in "{model:[a-z}": `;
  assert.ok(lines[0]!.startsWith(prefix), lines[0]);
});

Deno.test("invalid route pattern: bad segments", () => {
  const text = withRoutes("/v1/a{b", "v1/chat", "/v1//chat", "/v1/:", "/v1/**");
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"/v1/a{b"')
    } httpServer.forwards.0.routing.0.path: forward "f1": invalid pattern "/v1/a{b": invalid segment "a{b"`,
    `${
      pos(text, '"v1/chat"')
    } httpServer.forwards.0.routing.1.path: forward "f1": invalid pattern "v1/chat": pattern must start with "/"`,
    `${
      pos(text, '"/v1//chat"')
    } httpServer.forwards.0.routing.2.path: forward "f1": invalid pattern "/v1//chat": invalid segment ""`,
    `${
      pos(text, '"/v1/:"')
    } httpServer.forwards.0.routing.3.path: forward "f1": invalid pattern "/v1/:": invalid parameter name ":"`,
    `${
      pos(text, '"/v1/**"')
    } httpServer.forwards.0.routing.4.path: forward "f1": invalid pattern "/v1/**": invalid segment "**"`,
  ]);
});

Deno.test("duplicate route patterns differ only in parameter names", () => {
  const text = withRoutes("/v1/:a", "/v1/:b", "/x/{m:[0-9]+}", "/x/{n:[0-9]+}", "/y/*", "/y/*");
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"/v1/:b"')
    } httpServer.forwards.0.routing.1.path: forward "f1": duplicates the pattern of routing.0`,
    `${
      pos(text, '"/x/{n')
    } httpServer.forwards.0.routing.3.path: forward "f1": duplicates the pattern of routing.2`,
    `${
      pos(text, '"/y/*"', 2)
    } httpServer.forwards.0.routing.5.path: forward "f1": duplicates the pattern of routing.4`,
  ]);
});

Deno.test("distinct route patterns are accepted", () => {
  const text = withRoutes("/v1/:a", "/v1/*", "/v1/:a/*", "/v1/chat", "/v1/{m:[a-z]+}", "/v1");
  assert.equal(load(text).config.httpServer.forwards[0]!.routing.length, 6);
});

Deno.test("header op insert (or replace) without a value", () => {
  const text = edit(
    BASE,
    "    url:",
    "    headers:\n      - op: insert\n        key: X-A\n      - op: replace\n        key: X-B\n      - op: remove\n        key: X-C\n    url:",
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "op: insert")
    } upstreams.0.headers.0.value: upstream "u1": header op "insert" needs a value`,
    `${
      pos(text, "op: replace")
    } upstreams.0.headers.1.value: upstream "u1": header op "replace" needs a value`,
  ]);
});

Deno.test("invalid header name", () => {
  const text = edit(BASE, "    url:", '    headers: [{op: remove, key: "X Bad"}]\n    url:');
  assert.deepEqual(errorLines(text), [
    `${pos(text, '"X Bad"')} upstreams.0.headers.0.key: upstream "u1": must be a valid header name`,
  ]);
});

Deno.test("proxy URL with a bad scheme, and an unparseable one", () => {
  const text = BASE + `    httpClient:
      proxy:
        url: "ftp://proxy.internal:21"
  - name: g2
    upstreams: [{name: u1}]
    httpClient: {proxy: {url: "nope"}}
`;
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"ftp://')
    } upstreamGroups.0.httpClient.proxy.url: group "g1": proxy URL scheme must be http, https or socks5, not "ftp:"`,
    `${pos(text, '"nope"')} upstreamGroups.1.httpClient.proxy.url: group "g2": invalid proxy URL`,
  ]);
});

Deno.test("invalid duration", () => {
  const text = BASE + '    httpClient:\n      timeout:\n        firstByte: "10 minutes"\n';
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"10 minutes"')
    } upstreamGroups.0.httpClient.timeout.firstByte: group "g1": invalid duration "10 minutes": use a number of seconds or a string like "250ms", "30s", "5m"`,
  ]);
});

Deno.test("invalid duration of retry.initial names milliseconds", () => {
  const text = BASE + "    httpClient:\n      retry:\n        initial: -5\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "-5")
    } upstreamGroups.0.httpClient.retry.initial: group "g1": invalid duration -5: use a number of milliseconds or a string like "250ms", "30s", "5m"`,
  ]);
});

Deno.test("duration below its bound", () => {
  const text = BASE + "    httpClient: {timeout: {firstByte: 0}}\n";
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "0}")
    } upstreamGroups.0.httpClient.timeout.firstByte: group "g1": must be at least 1ms`,
  ]);
});

Deno.test("invalid size", () => {
  const text = BASE.replace("httpServer:\n", 'httpServer:\n  maxBodySize: "lots"\n');
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"lots"')
    } httpServer.maxBodySize: invalid size "lots": use bytes or a string like "512KiB", "32MiB"`,
  ]);
});

Deno.test("invalid YAML: a syntax error with its line", () => {
  const text = edit(BASE, '    url: "https://api.example.com/v1"', "    url: a: b");
  assert.deepEqual(errorLines(text), [
    `${pos(text, "a: b")}: invalid YAML: Nested mappings are not allowed in compact mappings`,
  ]);
});

Deno.test("invalid YAML: an unclosed flow sequence", () => {
  const text = edit(BASE, "      - name: u1\n", "      [{name: u1}\n") + "extra: 1\n";
  const lines = errorLines(text);
  assert.ok(lines.length >= 1);
  for (const line of lines) assert.match(line, /^c\.yaml:\d+:\d+: invalid YAML: /);
});

Deno.test("invalid YAML: an unclosed quote", () => {
  const text = edit(
    BASE,
    '    url: "https://api.example.com/v1"',
    '    url: "https://api.example.com/v1',
  );
  const lines = errorLines(text);
  assert.equal(lines.length, 1);
  // The yaml library reports an unclosed quote where the text ends, never before the quote.
  const match = /^c\.yaml:(\d+):\d+: invalid YAML: Missing closing "quote$/.exec(lines[0]!);
  assert.ok(match, lines[0]);
  assert.ok(Number(match[1]) >= 8, lines[0]);
});

Deno.test("invalid YAML: tabs as indentation", () => {
  const text = edit(BASE, "      - name: u1\n", "\t- name: u1\n");
  const lines = errorLines(text);
  // The tab is reported at its line; the errors that follow from it come with it, in order.
  assert.ok(
    lines.includes(`${pos(text, "\t")}: invalid YAML: Tabs are not allowed as indentation`),
  );
  assertSortedByPosition(lines);
});

Deno.test("invalid YAML: an alias to an unset anchor is a config error, not a crash", () => {
  const text = edit(BASE, "    upstreams:\n      - name: u1\n", "    upstreams: *members\n");
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, "*members")
    }: invalid YAML: Unresolved alias (the anchor must be set before the alias): members`,
  ]);
});

Deno.test("invalid YAML: an alias bomb is a config error, not a crash", () => {
  const text = BASE + `x:
  a: &a [x, x, x, x, x, x, x, x, x, x]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
`;
  assert.deepEqual(errorLines(text), [
    `${FILE}: invalid YAML: Excessive alias count indicates a resource exhaustion attack`,
  ]);
});

Deno.test("YAML anchors and aliases that resolve are fine", () => {
  const text = BASE.replace(
    "    upstreams:\n      - name: u1\n",
    "    upstreams: &members\n      - name: u1\n",
  ) +
    "  - name: g2\n    upstreams: *members\n";
  assert.deepEqual(load(text).config.upstreamGroups[1]!.upstreams, [{ name: "u1", weight: 1 }]);
});

Deno.test("invalid YAML: bad indentation", () => {
  const text = edit(BASE, "    url:", "   url:");
  assert.deepEqual(errorLines(text), [
    `${pos(text, "   url:")}: invalid YAML: Sequence item without - indicator`,
  ]);
});

Deno.test("invalid YAML: duplicate keys", () => {
  const text = edit(BASE, "      port: 3000\n", "      port: 3000\n      port: 3001\n");
  assert.deepEqual(errorLines(text), [
    `${pos(text, "port: 3001")}: invalid YAML: Map keys must be unique`,
  ]);
});

Deno.test("the YAML root must be a mapping", () => {
  assert.deepEqual(errorLines("- a\n- b\n"), [
    `${FILE}:1:1: Invalid input: expected object, received array`,
  ]);
});

Deno.test("an unset ${VAR} names the variable, the field and the line", () => {
  const text = edit(
    BASE,
    "    url:",
    '    auth: {type: bearer, token: "${OPENAI_API_KEY}"}\n    url:',
  );
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"${OPENAI_API_KEY}"')
    } upstreams.0.auth.token: environment variable OPENAI_API_KEY is not set (use \${OPENAI_API_KEY:-} to allow it to be empty)`,
  ]);
  // Set, it loads.
  const loaded = load(text, { OPENAI_API_KEY: "sk-abc" });
  assert.deepEqual(loaded.config.upstreams[0]!.auth, { type: "bearer", token: "sk-abc" });
});

Deno.test("an unset ${VAR} in a validated field reports only the variable", () => {
  const text = edit(BASE, '"https://api.example.com/v1"', '"${UPSTREAM_URL}"');
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"${UPSTREAM_URL}"')
    } upstreams.0.url: environment variable UPSTREAM_URL is not set (use \${UPSTREAM_URL:-} to allow it to be empty)`,
  ]);
});

Deno.test("${VAR} values are validated after substitution", () => {
  const text = edit(BASE, "port: 3000", 'port: "${PORT}"');
  // A string from the environment is still a string: ports must be YAML numbers.
  const lines = errorLines(text, { PORT: "3000" });
  assert.deepEqual(lines, [
    `${
      pos(text, '"${PORT}"')
    } httpServer.forwards.0.port: forward "f1": Invalid input: expected number, received string`,
  ]);
  const url = edit(BASE, '"https://api.example.com/v1"', '"${URL:-ftp://x/}"');
  assert.deepEqual(errorLines(url), [
    // Shown as written: a value from the environment may be a secret.
    `${
      pos(url, '"${URL')
    } upstreams.0.url: upstream "u1": URL "\${URL:-ftp://x/}" must use http or https`,
  ]);
});

Deno.test("errors show a ${VAR} field as written and never the value it had", () => {
  const secret = "sk-from-env-value-77";
  const text = edit(BASE, '"https://api.example.com/v1"', '"${URL}"');
  const lines = errorLines(text, { URL: `ftp://host/v1?key=${secret}` });
  assert.deepEqual(lines, [
    `${pos(text, '"${URL}"')} upstreams.0.url: upstream "u1": URL "\${URL}" must use http or https`,
  ]);
});

Deno.test("a malformed ${ reference is an error at its field", () => {
  const text = edit(BASE, "    url:", '    auth: {type: bearer, token: "${BAD"}\n    url:');
  assert.deepEqual(errorLines(text), [
    `${
      pos(text, '"${BAD"')
    } upstreams.0.auth.token: invalid reference "\${BAD": use \${NAME} or \${NAME:-default}`,
  ]);
});

Deno.test("several errors are all reported, sorted by line", () => {
  const text = `httpServer:
  forwards:
    - name: f1
      port: 3000
      defaultGroup: missing_group
      ratelimt: {perSecond: 1, burst: 1}
  admin:
    port: 3000
upstreams:
  - name: u1
    url: "ftp://x.example/"
    auth: {type: bearer, token: "\${NO_SUCH_VAR}"}
  - name: u2
    url: "https://ok.example/v1"
    headers: [{op: insert, key: X-A}]
upstreamGroups:
  - name: g1
    upstreams: [{name: u1}, {name: u3, weight: 0}]
    balance: {strategy: random}
`;
  const error = configError(text);
  const lines = error.message.split("\n");
  assert.deepEqual(lines.map((l) => l.split(" ")[0]), [
    pos(text, "missing_group"),
    pos(text, "ratelimt"),
    pos(text, "3000", 2),
    pos(text, '"ftp'),
    pos(text, '"${NO_SUCH_VAR}"'),
    pos(text, "{op: insert"),
    pos(text, "u3"),
    pos(text, "0}"),
  ]);
  assert.deepEqual(lines.map((l) => l.split(" ")[1]), [
    "httpServer.forwards.0.defaultGroup:",
    "httpServer.forwards.0.ratelimt:",
    "httpServer.admin.port:",
    "upstreams.0.url:",
    "upstreams.0.auth.token:",
    "upstreams.1.headers.0.value:",
    "upstreamGroups.0.upstreams.1.name:",
    "upstreamGroups.0.upstreams.1.weight:",
  ]);
  // The issues are sorted by line, then column, and match the message.
  const sorted = [...error.issues].sort((a, b) => a.line - b.line || a.col - b.col);
  assert.deepEqual(error.issues, sorted);
  assert.equal(error.message, error.issues.map((i) => formatIssue(FILE, i)).join("\n"));
});

Deno.test("type errors in several sections are all reported, sorted by line", () => {
  const text = `httpServer:
  maxBodySize: lots
  forwards:
    - {name: f1, port: "3000", defaultGroup: g1, adress: x}
upstreams:
  - {name: u1, url: "https://a.example/v1", auth: {type: bearer, token: 5}}
upstreamGroups:
  - name: g1
    upstreams: [{name: u1}]
    balance: {strategy: fastest}
    httpClient: {retry: {attempts: 11}}
`;
  const lines = errorLines(text);
  assert.deepEqual(lines.map((l) => l.split(": ")[0]), [
    `${pos(text, "lots")} httpServer.maxBodySize`,
    `${pos(text, '"3000"')} httpServer.forwards.0.port`,
    `${pos(text, "adress")} httpServer.forwards.0.adress`,
    `${pos(text, "5}}")} upstreams.0.auth.token`,
    `${pos(text, "fastest")} upstreamGroups.0.balance.strategy`,
    `${pos(text, "11}")} upstreamGroups.0.httpClient.retry.attempts`,
  ]);
  assert.match(lines[2]!, /unknown key "adress" \(did you mean "address"\?\)$/);
  assert.match(lines[5]!, /Too big: expected number to be <=10$/);
  assertSortedByPosition(lines);
});

Deno.test("ConfigError.issues carry line, col, path and message", () => {
  const text = edit(BASE, "defaultGroup: g1", "defaultGroup: gX");
  const error = configError(text);
  assert.deepEqual(error.issues, [
    {
      line: 5,
      col: 21,
      path: "httpServer.forwards.0.defaultGroup",
      message: 'forward "f1": unknown group "gX" (groups: g1)',
    } satisfies ConfigIssue,
  ]);
});

Deno.test("formatIssue: with and without position and path", () => {
  assert.equal(
    formatIssue("f.yaml", { line: 3, col: 5, path: "a.b", message: "m" }),
    "f.yaml:3:5 a.b: m",
  );
  assert.equal(formatIssue("f.yaml", { line: 3, col: 5, path: "", message: "m" }), "f.yaml:3:5: m");
  assert.equal(formatIssue("f.yaml", { line: 0, col: 0, path: "", message: "m" }), "f.yaml: m");
  assert.equal(formatIssue("f.yaml", { line: 0, col: 0, path: "x", message: "m" }), "f.yaml x: m");
});

// ---------------------------------------------------------------------------------------------
// Files

async function fileError(path: string): Promise<ConfigError> {
  try {
    await loadConfigFile(path, envOf());
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("loadConfigFile: a valid file", async () => {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(path, BASE);
    const loaded = await loadConfigFile(path, envOf());
    assert.equal(loaded.source, path);
    assert.equal(loaded.config.upstreams[0]!.url, "https://api.example.com/v1");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadConfigFile: errors name the file path", async () => {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    const text = edit(BASE, "defaultGroup: g1", "defaultGroup: gX");
    await Deno.writeTextFile(path, text);
    const error = await fileError(path);
    assert.equal(error.file, path);
    assert.equal(
      error.message,
      `${path}:5:21 httpServer.forwards.0.defaultGroup: forward "f1": unknown group "gX" (groups: g1)`,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadConfigFile: a missing file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/nope.yaml`;
    const error = await fileError(path);
    assert.equal(error.message, `${path}: file not found`);
    assert.deepEqual(error.issues, [{ line: 0, col: 0, path: "", message: "file not found" }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfigFile: a directory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const error = await fileError(dir);
    assert.equal(error.file, dir);
    assert.equal(error.message, `${dir}: is a directory`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * What `loadConfigFile(path)` throws, run in a `deno eval` child: Deno lets only a process with
 * every permission read under /proc, and the test runner is not given them.
 */
async function loadErrorInChild(path: string): Promise<string> {
  const load = new URL("../../src/config/load.ts", import.meta.url).href;
  const { stdout, stderr, success } = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { loadConfigFile } from ${JSON.stringify(load)};
       await loadConfigFile(${JSON.stringify(path)}, () => undefined)
         .then(() => console.log("loaded"), (error) => console.log(error.message));`,
    ],
    cwd: new URL("../..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  assert.ok(success, decoder.decode(stderr));
  return decoder.decode(stdout).trim();
}

// Root (CI runs as root) reads a file of mode 0o000, but not a write-only sysctl: procfs refuses
// to read /proc/sys/vm/drop_caches (mode 0200) to root too, with EACCES. Everyone else gets a
// chmod-ed temp file, in process.
Deno.test({
  name: "loadConfigFile: an unreadable file, as root too",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const path = await Deno.makeTempFile({ suffix: ".yaml" });
    try {
      await Deno.writeTextFile(path, BASE);
      await Deno.chmod(path, 0o000);
      const readable = await Deno.readTextFile(path).then(() => true, () => false);
      if (!readable) {
        const error = await fileError(path);
        assert.equal(error.message, `${path}: permission denied`);
        assert.deepEqual(error.issues, [
          { line: 0, col: 0, path: "", message: "permission denied" },
        ]);
        return;
      }
    } finally {
      await Deno.remove(path);
    }
    if (Deno.build.os !== "linux") return; // root elsewhere may have nothing it cannot read
    const sysctl = "/proc/sys/vm/drop_caches";
    assert.equal(await loadErrorInChild(sysctl), `${sysctl}: permission denied`);
  },
});

Deno.test("loadConfigFile: a path through a file (not a directory), root or not", async () => {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    const error = await fileError(`${path}/config.yaml`);
    assert.equal(error.file, `${path}/config.yaml`);
    assert.match(error.message, new RegExp(`^${path}/config\\.yaml: cannot read: Not a directory`));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadConfigFile: a file with invalid YAML", async () => {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(path, "a: 1\na: 2\n");
    const error = await fileError(path);
    assert.equal(error.message, `${path}:2:1: invalid YAML: Map keys must be unique`);
  } finally {
    await Deno.remove(path);
  }
});

// ---------------------------------------------------------------------------------------------
// effectivePathMode

Deno.test("effectivePathMode: replace for a URL with a path, append for an origin or trailing /", () => {
  const mode = (url: string, m?: "replace" | "append") =>
    effectivePathMode({ url, path: { mode: m } });
  assert.equal(mode("https://api.openai.com/v1/chat/completions"), "replace");
  assert.equal(mode("https://api.openai.com/v1"), "replace");
  assert.equal(mode("https://api.openai.com/v1?x=1"), "replace");
  assert.equal(mode("https://api.openai.com"), "append");
  assert.equal(mode("https://api.openai.com/"), "append");
  assert.equal(mode("https://api.openai.com/v1/"), "append");
  assert.equal(mode("http://127.0.0.1:8080"), "append");
  // An explicit mode wins.
  assert.equal(mode("https://api.openai.com/v1", "append"), "append");
  assert.equal(mode("https://api.openai.com", "replace"), "replace");
  // An unparseable URL (reported elsewhere) is treated as an origin.
  assert.equal(mode("not a url"), "append");
});

Deno.test("effectivePathMode on loaded upstreams", () => {
  const text = `httpServer:
  forwards: [{name: f1, port: 3000, defaultGroup: g1}]
upstreams:
  - {name: a, url: "https://x.example/v1/chat/completions"}
  - {name: b, url: "https://x.example"}
  - {name: c, url: "https://x.example/v1/"}
  - {name: d, url: "https://x.example/v1", path: {mode: append}}
upstreamGroups: [{name: g1, upstreams: [{name: a}]}]
`;
  const modes = load(text).config.upstreams.map((u) => [u.name, effectivePathMode(u)]);
  assert.deepEqual(modes, [["a", "replace"], ["b", "append"], ["c", "append"], ["d", "append"]]);
});

Deno.test("a header value, token or agent with a line break is a config error", () => {
  const yaml = `httpServer:
  forwards: [{name: f, port: 0, defaultGroup: g}]
upstreams:
  - name: u
    url: "http://127.0.0.1:1"
    auth: {type: bearer, token: "abc\\r\\nx-injected: 1"}
    headers: [{op: insert, key: X-A, value: "a\\nb"}]
upstreamGroups:
  - {name: g, upstreams: [{name: u}], httpClient: {agent: "ua\\r\\n"}}
`;
  assert.throws(() => parseConfig(yaml, "c.yaml", () => undefined), (error) => {
    assert.ok(error instanceof ConfigError);
    const text = error.message;
    assert.match(text, /upstreams\.0\.auth\.token: .*no line breaks/);
    assert.match(text, /upstreams\.0\.headers\.0\.value: .*no line breaks/);
    assert.match(text, /upstreamGroups\.0\.httpClient\.agent: .*no line breaks/);
    return true;
  });
});

Deno.test("a header value, token or agent with a control character or beyond Latin-1 is an error", () => {
  const yaml = `httpServer:
  forwards: [{name: f, port: 0, defaultGroup: g}]
upstreams:
  - name: u
    url: "http://127.0.0.1:1"
    auth: {type: bearer, token: "sk-\\u20ac"}
    headers: [{op: insert, key: X-A, value: "a\\u0001b"}, {op: insert, key: X-B, value: "caf\\u00e9\\tok"}]
upstreamGroups:
  - {name: g, upstreams: [{name: u}], httpClient: {agent: "ua\\u007f"}}
`;
  assert.throws(() => parseConfig(yaml, "c.yaml", () => undefined), (error) => {
    assert.ok(error instanceof ConfigError);
    const text = error.message;
    assert.match(text, /upstreams\.0\.auth\.token: .*must be printable text on one line/);
    assert.match(text, /upstreams\.0\.headers\.0\.value: .*must be printable text on one line/);
    assert.match(
      text,
      /upstreamGroups\.0\.httpClient\.agent: .*must be printable text on one line/,
    );
    // Latin-1 and tab are fine.
    assert.doesNotMatch(text, /headers\.1/);
    return true;
  });
});

Deno.test("a header op may not set the headers that frame the message", () => {
  for (const key of ["Content-Length", "transfer-encoding", "Connection", "TE", "Upgrade"]) {
    const text = edit(
      BASE,
      "    url:",
      `    headers: [{op: replace, key: ${key}, value: "1"}]\n    url:`,
    );
    assert.throws(() => parseConfig(text, FILE, envOf()), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(
        error.message,
        /upstreams\.0\.headers\.0\.key: upstream "u1": is set by the proxy itself/,
      );
      return true;
    }, key);
  }
  // Removing one is harmless (never forwarded anyway), and loads.
  const removal = edit(BASE, "    url:", `    headers: [{op: remove, key: Connection}]\n    url:`);
  assert.equal(parseConfig(removal, FILE, envOf()).config.upstreams[0]!.headers[0]!.op, "remove");
  // Host may be set: it replaces the URL's authority.
  const host = edit(
    BASE,
    "    url:",
    `    headers: [{op: replace, key: Host, value: "api.internal"}]\n    url:`,
  );
  assert.equal(parseConfig(host, FILE, envOf()).config.upstreams[0]!.headers[0]!.key, "Host");
});

Deno.test("model routing keys: models, fallbacks and modelMap load; bad references are errors", () => {
  const good = edit(
    edit(
      BASE,
      "      - name: u1\n",
      `      - name: u1
    models: ["gpt-4o", "o3*"]
    fallbacks: [{group: g1, model: "gpt-4o-mini"}]
`,
    ),
    '    url: "https://api.example.com/v1"\n',
    `    url: "https://api.example.com/v1"
    modelMap: {"gpt-4o": "Qwen/Qwen2.5-72B-Instruct"}
`,
  );
  const config = parseConfig(good, FILE, envOf()).config;
  assert.deepEqual(config.upstreamGroups[0]!.models, ["gpt-4o", "o3*"]);
  assert.deepEqual(config.upstreamGroups[0]!.fallbacks, [{ group: "g1", model: "gpt-4o-mini" }]);
  assert.deepEqual(config.upstreams[0]!.modelMap, { "gpt-4o": "Qwen/Qwen2.5-72B-Instruct" });
  assert.deepEqual(parseConfig(BASE, FILE, envOf()).config.upstreamGroups[0]!.fallbacks, []);

  const bad = edit(
    BASE,
    "      - name: u1\n",
    `      - name: u1
    models: [""]
    fallbacks: [{group: nope}, {group: g1}]
`,
  );
  assert.deepEqual(errorLines(bad), [
    `${
      pos(bad, '""')
    } upstreamGroups.0.models.0: group "g1": Too small: expected string to have >=1 characters`,
    `${
      pos(bad, "nope")
    } upstreamGroups.0.fallbacks.0.group: group "g1": unknown group "nope" (groups: g1)`,
    `${
      pos(bad, "g1}]")
    } upstreamGroups.0.fallbacks.1.group: group "g1": falls back to its own group with the same model: give a model`,
  ]);
});
