import assert from "node:assert/strict";
import { withTempFile } from "./_helpers/temp_file.ts";
import { chooseConfig, type CliOptions, parseArgs, USAGE } from "../src/cli.ts";

// ---------------------------------------------------------------------------------------------
// parseArgs

const DEFAULTS: CliOptions = {
  check: false,
  json: false,
  logLevel: "info",
  version: false,
  help: false,
  hashKey: false,
};

function options(...args: string[]): CliOptions {
  const parsed = parseArgs(args);
  assert.ok(parsed.ok, parsed.ok ? "" : parsed.error);
  return parsed.options;
}

function error(...args: string[]): string {
  const parsed = parseArgs(args);
  assert.ok(!parsed.ok, `expected ${JSON.stringify(args)} to be refused`);
  return parsed.error;
}

Deno.test("parseArgs: no arguments → defaults, no config (the embedded one)", () => {
  assert.deepEqual(options(), DEFAULTS);
  assert.equal(options().config, undefined);
});

Deno.test("parseArgs: -c / --config PATH and --config=PATH", () => {
  assert.deepEqual(options("-c", "a.yaml"), { ...DEFAULTS, config: "a.yaml" });
  assert.deepEqual(options("--config", "/etc/llmproxy.yaml"), {
    ...DEFAULTS,
    config: "/etc/llmproxy.yaml",
  });
  assert.deepEqual(options("--config=x.yaml"), { ...DEFAULTS, config: "x.yaml" });
  // Only the first "=" splits.
  assert.deepEqual(options("--config=a=b.yaml"), { ...DEFAULTS, config: "a=b.yaml" });
  // "-" alone is a value (a path), not a flag.
  assert.deepEqual(options("-c", "-"), { ...DEFAULTS, config: "-" });
  // The last one wins.
  assert.deepEqual(options("-c", "a", "--config", "b"), { ...DEFAULTS, config: "b" });
});

Deno.test("parseArgs: boolean flags", () => {
  assert.deepEqual(options("--check"), { ...DEFAULTS, check: true });
  assert.deepEqual(options("--json"), { ...DEFAULTS, json: true });
  assert.deepEqual(options("--version"), { ...DEFAULTS, version: true });
  assert.deepEqual(options("--help"), { ...DEFAULTS, help: true });
  assert.deepEqual(options("-h"), { ...DEFAULTS, help: true });
});

Deno.test("parseArgs: --log-level LEVEL and --log-level=LEVEL", () => {
  for (const level of ["debug", "info", "warn", "error"] as const) {
    assert.deepEqual(options("--log-level", level), { ...DEFAULTS, logLevel: level });
    assert.deepEqual(options(`--log-level=${level}`), { ...DEFAULTS, logLevel: level });
  }
});

Deno.test("parseArgs: every flag together, in any order", () => {
  const all: CliOptions = {
    config: "c.yaml",
    check: true,
    json: true,
    logLevel: "debug",
    version: true,
    help: true,
    hashKey: false,
  };
  assert.deepEqual(
    options("--check", "-c", "c.yaml", "--json", "--log-level", "debug", "--version", "-h"),
    all,
  );
  assert.deepEqual(
    options("-h", "--version", "--log-level=debug", "--json", "--config=c.yaml", "--check"),
    all,
  );
});

Deno.test("parseArgs: a value flag without its value", () => {
  assert.equal(error("-c"), "-c needs a value");
  assert.equal(error("--config"), "--config needs a value");
  assert.equal(error("--config="), "--config needs a value");
  assert.equal(error("--log-level"), "--log-level needs a value");
  // The next argument is a flag, not a value.
  assert.equal(error("-c", "--check"), "-c needs a value");
  assert.equal(error("--config", "-h"), "--config needs a value");
  assert.equal(error("--log-level", "--json"), "--log-level needs a value");
});

Deno.test("parseArgs: a boolean flag given a value", () => {
  assert.equal(error("--check=yes"), "--check takes no value");
  assert.equal(error("--json=1"), "--json takes no value");
  assert.equal(error("--version="), "--version takes no value");
  assert.equal(error("--help=me"), "--help takes no value");
});

Deno.test("parseArgs: unknown flags", () => {
  assert.equal(error("--bogus"), "unknown flag --bogus");
  assert.equal(error("-x"), "unknown flag -x");
  assert.equal(error("--bogus=1"), "unknown flag --bogus");
  assert.equal(error("--Check"), "unknown flag --Check");
  assert.equal(error("--"), "unknown flag --");
  assert.equal(error("-c=x.yaml"), "unknown flag -c=x.yaml");
  assert.equal(error("--check", "--verbose"), "unknown flag --verbose");
});

Deno.test("parseArgs: positional arguments are refused", () => {
  assert.equal(error("config.yaml"), 'unexpected argument "config.yaml"');
  assert.equal(error("--check", "serve"), 'unexpected argument "serve"');
  assert.equal(error("-c", "a.yaml", "b.yaml"), 'unexpected argument "b.yaml"');
});

Deno.test("parseArgs: a bad log level", () => {
  assert.equal(
    error("--log-level", "trace"),
    'invalid --log-level "trace": use debug, info, warn, error',
  );
  assert.equal(
    error("--log-level=INFO"),
    'invalid --log-level "INFO": use debug, info, warn, error',
  );
  assert.equal(error("--log-level="), 'invalid --log-level "": use debug, info, warn, error');
});

Deno.test("USAGE documents every flag", () => {
  assert.ok(USAGE.startsWith("Usage: llmproxy [options]\n"));
  for (
    const flag of [
      "-c, --config PATH",
      "--check",
      "--json",
      "--log-level LEVEL",
      "--version",
      "--hash-key",
      "-h, --help",
    ]
  ) {
    assert.ok(USAGE.includes(flag), flag);
  }
  assert.ok(USAGE.includes("debug | info | warn | error"));
});

// ---------------------------------------------------------------------------------------------
// chooseConfig

Deno.test("chooseConfig: --config wins over LLMPROXY_CONFIG, even when its file is missing", () => {
  const env = (name: string) => name === "LLMPROXY_CONFIG" ? "/config/config.yaml" : undefined;
  assert.deepEqual(chooseConfig("my.yaml", env, () => false), { path: "my.yaml" });
});

Deno.test("chooseConfig: LLMPROXY_CONFIG names the file when it exists, else the embedded default with a note", () => {
  const env = (name: string) => name === "LLMPROXY_CONFIG" ? "/config/config.yaml" : undefined;
  assert.deepEqual(chooseConfig(undefined, env, (p) => p === "/config/config.yaml"), {
    path: "/config/config.yaml",
  });
  assert.deepEqual(chooseConfig(undefined, env, () => false), {
    path: undefined,
    note:
      "LLMPROXY_CONFIG=/config/config.yaml: no file there; using the embedded config.default.yaml",
  });
});

Deno.test("chooseConfig: neither --config nor LLMPROXY_CONFIG (unset or empty) → the embedded default", () => {
  assert.deepEqual(chooseConfig(undefined, () => undefined, () => true), { path: undefined });
  assert.deepEqual(chooseConfig(undefined, () => "", () => true), { path: undefined });
});

// ---------------------------------------------------------------------------------------------
// The program

const ROOT = new URL("../", import.meta.url);
const MAIN = new URL("main.ts", ROOT);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function runMain(...args: string[]): Promise<Run> {
  return runMainWith(["--allow-read", "--allow-env"], ...args);
}

/** Runs main.ts with the given permission flags. */
function runMainWith(permissions: string[], ...args: string[]): Promise<Run> {
  return runMainEnv({}, permissions, ...args);
}

/** Runs main.ts with extra environment variables and the given permission flags. */
async function runMainEnv(
  env: Record<string, string>,
  permissions: string[],
  ...args: string[]
): Promise<Run> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, decodeURIComponent(MAIN.pathname), ...args],
    cwd: decodeURIComponent(ROOT.pathname),
    // Empty credentials and no LLMPROXY_CONFIG, whatever the environment running the tests holds.
    env: {
      OPENAI_API_KEY: "",
      ADMIN_TOKEN: "",
      LLMPROXY_KEY: "",
      LLMPROXY_CONFIG: "",
      NO_COLOR: "1",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function assertNoStackTrace(run: Run): void {
  assert.ok(!run.stderr.includes("    at "), `stack trace on stderr:\n${run.stderr}`);
  assert.ok(!run.stdout.includes("    at "), `stack trace on stdout:\n${run.stdout}`);
  assert.ok(!/\berror: Uncaught\b/.test(run.stderr), run.stderr);
}

const VALID = `httpServer:
  forwards:
    - {name: f1, port: 0, defaultGroup: g1}
upstreams:
  - {name: u1, url: "https://api.example.com/v1"}
upstreamGroups:
  - name: g1
    upstreams: [{name: u1}]
`;

Deno.test("parseArgs: --hash-key", () => {
  assert.deepEqual(options("--hash-key"), { ...DEFAULTS, hashKey: true });
  assert.equal(error("--hash-key=x"), "--hash-key takes no value");
});

/** Runs `main.ts --hash-key` with `input` on stdin. */
async function hashKey(input: string): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", decodeURIComponent(MAIN.pathname), "--hash-key"],
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("main --hash-key: prints sha256:<hex> of the key on stdin, its line end not included", async () => {
  // printf 'abc' | sha256sum
  const abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
  for (const input of ["abc", "abc\n", "abc\r\n"]) {
    const run = await hashKey(input);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, abc, JSON.stringify(input));
  }
  const spaced = await hashKey("abc \n");
  assert.notEqual(spaced.stdout, abc, "only the line end is dropped, nothing else");
  for (const input of ["", "\n", "a\nb\n"]) {
    const run = await hashKey(input);
    assert.equal(run.code, 1, JSON.stringify(input));
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^llmproxy: --hash-key: /);
  }
});

Deno.test("main --help: exit 0, usage on stdout", async () => {
  const run = await runMain("--help");
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, USAGE + "\n");
  assert.equal(run.stderr, "");
});

Deno.test("main -h: exit 0, usage on stdout", async () => {
  const run = await runMain("-h");
  assert.equal(run.code, 0, run.stderr);
  assert.ok(run.stdout.startsWith("Usage: llmproxy"));
});

Deno.test("main --version: exit 0, prints llmproxy 0.1.0", async () => {
  const run = await runMain("--version");
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^llmproxy 0\.1\.0( |\n)/);
  assert.equal(run.stdout.split("\n").length, 2); // one line
  assert.equal(run.stderr, "");
});

Deno.test("main --bogus: exit 2, the error and the usage on stderr", async () => {
  const run = await runMain("--bogus");
  assert.equal(run.code, 2);
  assert.equal(run.stdout, "");
  assert.ok(run.stderr.startsWith("llmproxy: unknown flag --bogus\n"), run.stderr);
  assert.ok(run.stderr.includes(USAGE), run.stderr);
  assertNoStackTrace(run);
});

Deno.test("main with a positional argument or a missing value: exit 2", async () => {
  const positional = await runMain("config.yaml");
  assert.equal(positional.code, 2);
  assert.ok(positional.stderr.startsWith('llmproxy: unexpected argument "config.yaml"\n'));
  const missing = await runMain("--check", "-c");
  assert.equal(missing.code, 2);
  assert.ok(missing.stderr.startsWith("llmproxy: -c needs a value\n"));
  const level = await runMain("--log-level", "loud", "--check");
  assert.equal(level.code, 2);
  assert.ok(level.stderr.startsWith('llmproxy: invalid --log-level "loud"'));
});

Deno.test("main --check on the embedded default: exit 0, config OK, warnings on stderr", async () => {
  const run = await runMain("--check");
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "config OK\n");
  assert.equal(
    run.stderr,
    'warning: upstream "openai_primary" has an empty bearer credential: its provider will likely refuse requests (401)\n' +
      'warning: upstream "openai_api" has an empty bearer credential: its provider will likely refuse requests (401)\n' +
      'warning: client key "default" is empty: nobody can present it (set its variable, e.g. LLMPROXY_KEY)\n' +
      'warning: no client key can be presented: forwards "to_mixgroup" answer 401 to every request\n',
  );
});

Deno.test("main --check -c <valid file>: exit 0, config OK, no warnings", async () => {
  await withTempFile(VALID, async (path) => {
    const run = await runMain("--check", "-c", path);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "config OK\n");
    assert.equal(run.stderr, "");
  });
});

Deno.test("main --check --config=<file with errors>: exit 1, file:line:col lines, no stack trace", async () => {
  const text = `httpServer:
  forwards:
    - name: f1
      port: 3000
      defaultGroup: nope
upstreams:
  - name: u1
    url: "ftp://api.example.com/v1"
    breaker: {treshold: 0.5}
upstreamGroups:
  - name: g1
    upstreams: [{name: u1}]
`;
  await withTempFile(text, async (path) => {
    const run = await runMain("--check", `--config=${path}`);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.equal(
      run.stderr,
      [
        `${path}:5:21 httpServer.forwards.0.defaultGroup: forward "f1": unknown group "nope" (groups: g1)`,
        `${path}:8:10 upstreams.0.url: upstream "u1": URL "ftp://api.example.com/v1" must use http or https`,
        `${path}:9:15 upstreams.0.breaker.treshold: upstream "u1": unknown key "treshold" (did you mean "threshold"?)`,
        "config invalid: 3 error(s)",
        "",
      ].join("\n"),
    );
    assertNoStackTrace(run);
  });
});

Deno.test("main -c <file with errors> (no --check): exit 1 before listening, no stack trace", async () => {
  await withTempFile(VALID.replace("port: 0", "port: -1"), async (path) => {
    const run = await runMain("-c", path);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.match(
      run.stderr,
      new RegExp(`^${RegExp.escape(path)}:3:24 httpServer\\.forwards\\.0\\.port: forward "f1": `),
    );
    assert.ok(!run.stderr.includes("config invalid"));
    assertNoStackTrace(run);
  });
});

Deno.test("main -c <file> whose port is taken: exit 1 naming the forward and address, no stack trace", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const config = VALID.replace("port: 0,", `port: ${taken.addr.port}, address: 127.0.0.1,`);
    assert.notEqual(config, VALID);
    await withTempFile(config, async (path) => {
      const run = await runMainWith(["--allow-read", "--allow-env", "--allow-net"], "-c", path);
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stderr,
        new RegExp(
          `cannot start: forward "f1" cannot listen on 127\\.0\\.0\\.1:${taken.addr.port}`,
        ),
      );
      assert.ok(!run.stderr.includes("unhandled rejection"), run.stderr);
      assertNoStackTrace(run);
    });
  } finally {
    taken.close();
  }
});

Deno.test("main -c <file with errors>, config loaded in a child process: the same errors", async () => {
  await withTempFile(VALID.replace("port: 0", "port: -1"), async (path) => {
    const inProcess = await runMain("-c", path);
    const isolated = await runMainWith(["--allow-read", "--allow-env", "--allow-run"], "-c", path);
    assert.equal(isolated.code, 1);
    assert.equal(isolated.stdout, "");
    assert.equal(isolated.stderr, inProcess.stderr);
    assertNoStackTrace(isolated);
  });
  const missing = await runMainWith(
    ["--allow-read", "--allow-env", "--allow-run"],
    "-c",
    "/nonexistent.yaml",
  );
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "/nonexistent.yaml: file not found\n");
});

/**
 * Starts main.ts with `permissions` on a valid config (debug logs), stops it once it listens,
 * and returns what it logged and its exit code.
 */
async function startUntilListening(permissions: string[]): Promise<{ log: string; code: number }> {
  const local = VALID.replace("port: 0,", "port: 0, address: 127.0.0.1,");
  assert.notEqual(local, VALID);
  return await withTempFile(local, async (path) => {
    const process = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissions,
        decodeURIComponent(MAIN.pathname),
        "-c",
        path,
        "--log-level",
        "debug",
      ],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let log = "";
    const decoder = new TextDecoder();
    const deadline = setTimeout(() => process.kill("SIGKILL"), 20_000);
    let stopped = false;
    // Read to the end: a closed pipe would fail the proxy's last log lines.
    for await (const chunk of process.stderr) {
      log += decoder.decode(chunk, { stream: true });
      if (!stopped && log.includes("listening on")) {
        stopped = true;
        process.kill("SIGTERM");
      }
    }
    const status = await process.status;
    clearTimeout(deadline);
    return { log, code: status.code };
  });
}

Deno.test("main with --allow-run loads its config in a child process, then serves", async () => {
  const run = await startUntilListening([
    "--allow-read",
    "--allow-env",
    "--allow-net",
    "--allow-run",
  ]);
  assert.match(run.log, /DEBUG config loaded in a child process/);
  assert.match(run.log, /forward "f1" listening on http:\/\/127\.0\.0\.1:\d+/);
  assert.equal(run.code, 0, run.log);
});

Deno.test("main with --allow-run but a --deny-read loads in-process: a child would read more", async () => {
  const run = await startUntilListening([
    "--allow-read",
    "--deny-read=/nonexistent-llmproxy-dir",
    "--allow-env",
    "--allow-net",
    "--allow-run",
  ]);
  assert.match(run.log, /DEBUG config loaded in-process/);
  assert.doesNotMatch(run.log, /loader process failed/);
  assert.match(run.log, /forward "f1" listening on/);
  assert.equal(run.code, 0, run.log);
});

Deno.test("main --check with LLMPROXY_CONFIG: that file when it exists, else the embedded default", async () => {
  const broken = "upstreams: [oops";
  await withTempFile(broken, async (path) => {
    const run = await runMainEnv(
      { LLMPROXY_CONFIG: path },
      ["--allow-read", "--allow-env"],
      "--check",
    );
    assert.equal(run.code, 1, run.stderr);
    assert.ok(run.stderr.startsWith(`${path}:`), run.stderr);
  });
  const missing = await runMainEnv(
    { LLMPROXY_CONFIG: "/nonexistent/config.yaml" },
    ["--allow-read", "--allow-env"],
    "--check",
  );
  assert.equal(missing.code, 0, missing.stderr);
  assert.equal(missing.stdout, "config OK\n");
});

Deno.test("main --check -c /nonexistent.yaml: exit 1, file not found", async () => {
  const run = await runMain("--check", "-c", "/nonexistent.yaml");
  assert.equal(run.code, 1);
  assert.equal(run.stdout, "");
  assert.equal(run.stderr, "/nonexistent.yaml: file not found\nconfig invalid: 1 error(s)\n");
  assertNoStackTrace(run);
});

Deno.test("main --check -c <directory>: exit 1, is a directory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = await runMain("--check", "-c", dir);
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `${dir}: is a directory\nconfig invalid: 1 error(s)\n`);
    assertNoStackTrace(run);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main --check -c <invalid YAML>: exit 1, the YAML error with its line", async () => {
  await withTempFile("httpServer:\n  forwards: [\nupstreams: a: b\n", async (path) => {
    const run = await runMain("--check", "-c", path);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    const lines = run.stderr.trimEnd().split("\n");
    assert.match(lines.at(-1)!, /^config invalid: \d+ error\(s\)$/);
    for (const line of lines.slice(0, -1)) {
      assert.ok(line.startsWith(`${path}:`), line);
      assert.match(line.slice(path.length), /^:\d+:\d+: invalid YAML: /);
    }
    assertNoStackTrace(run);
  });
});

Deno.test("main --check -c <unresolved alias>: exit 1, no stack trace", async () => {
  await withTempFile(VALID.replace("[{name: u1}]", "*nope"), async (path) => {
    const run = await runMain("--check", "-c", path);
    assert.equal(run.code, 1);
    assert.equal(
      run.stderr,
      `${path}:8:16: invalid YAML: Unresolved alias (the anchor must be set before the alias): nope\n` +
        "config invalid: 1 error(s)\n",
    );
    assertNoStackTrace(run);
  });
});

Deno.test("main --check with an unset ${VAR}: exit 1 naming the variable", async () => {
  const text = VALID.replace('"https://api.example.com/v1"', '"${LLMPROXY_TEST_UNSET_URL}"');
  await withTempFile(text, async (path) => {
    const run = await runMain("--check", "-c", path);
    assert.equal(run.code, 1);
    assert.equal(
      run.stderr,
      `${path}:5:21 upstreams.0.url: environment variable LLMPROXY_TEST_UNSET_URL is not set (use \${LLMPROXY_TEST_UNSET_URL:-} to allow it to be empty)\n` +
        "config invalid: 1 error(s)\n",
    );
  });
});
