/**
 * CI check of the container image: builds `llmproxy:latest` (`tools/image.ts`, as
 * `deno task image` does), then runs it with a config mounted read-only at /config, a read-only
 * root file system and the host network, in front of the mock upstream on the host. Checks: no
 * shell in the image, a non-root PID 1, /ready and /health, a JSON and an SSE completion, and
 * SIGTERM mid-stream: the stream finishes and the container exits 0; with a drain deadline
 * shorter than the stream, the stream ends with the error event and the container exits 0.
 * Prints `image: OK <size>` and exits 0, or says what failed and exits 1. Prints
 * `image: SKIPPED …` and exits 0 when neither podman nor docker is installed.
 *
 * Usage: deno run --allow-all .ci/image_smoke.ts [--no-build]
 *
 * The podman on our CI machines needs `--runtime runc --cgroup-manager=cgroupfs` (crun refuses
 * their hybrid cgroup setup) and explicit rlimits; `IMAGE_ENGINE_FLAGS` / `IMAGE_RUN_FLAGS`
 * replace those defaults (set them empty for a stock Docker or Podman).
 */
import { startMockUpstream } from "../tools/mock_upstream.ts";
import { buildImage } from "../tools/image.ts";

const TAG = "llmproxy:latest";
/** The bound for the image. */
const MAX_IMAGE_BYTES = 110e6;

function onPath(command: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/${command}`).isFile;
    } catch {
      return false;
    }
  });
}

const engine = onPath("podman") ? "podman" : onPath("docker") ? "docker" : undefined;
if (!engine) {
  console.log("image: SKIPPED ******** neither podman nor docker is installed ********");
  Deno.exit(0);
}
const words = (text: string) => text.split(/\s+/).filter(Boolean);
const engineFlags = words(
  Deno.env.get("IMAGE_ENGINE_FLAGS") ??
    (engine === "podman" && onPath("runc") ? "--runtime runc --cgroup-manager=cgroupfs" : ""),
);
const runFlags = words(
  Deno.env.get("IMAGE_RUN_FLAGS") ??
    (engine === "podman" ? "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024" : ""),
);

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(engine!, {
    args: [...engineFlags, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    out: decoder.decode(output.stdout).trim(),
    err: decoder.decode(output.stderr).trim(),
  };
}

function freePort(): number {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class Failure extends Error {}
function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Failure(what);
}

const mock = await startMockUpstream({ name: "image-mock" });
const names: string[] = [];
const dirs: string[] = [];
const children: Deno.ChildProcess[] = [];

/** A config dir readable by the image's user (65532), as the mount at /config. */
async function configDir(
  ports: { forward: number; admin: number },
  drainS: number,
  upstreamUrl: string,
) {
  const dir = await Deno.makeTempDir({ prefix: "llmproxy-image-" });
  dirs.push(dir);
  await Deno.writeTextFile(
    `${dir}/config.yaml`,
    `httpServer:
  shutdownTimeout: ${drainS}
  forwards: [{name: smoke, port: ${ports.forward}, address: 127.0.0.1, defaultGroup: g}]
  admin: {port: ${ports.admin}, address: 127.0.0.1}
upstreams:
  - {name: mock, url: "${upstreamUrl}/v1/chat/completions"}
upstreamGroups:
  - {name: g, upstreams: [{name: mock}]}
`,
  );
  await Deno.chmod(dir, 0o755);
  await Deno.chmod(`${dir}/config.yaml`, 0o644);
  return dir;
}

interface Running {
  name: string;
  forward: string;
  admin: string;
  child: Deno.ChildProcess;
  /** The container's output (podman run attached). */
  output: Promise<string>;
  startMs: number;
}

/** Starts the image on a mounted config; resolves once /ready answers 200. */
async function start(
  drainS: number,
  options: { upstreamUrl?: string; mounts?: string[] } = {},
): Promise<Running> {
  const ports = { forward: freePort(), admin: freePort() };
  const dir = await configDir(ports, drainS, options.upstreamUrl ?? mock.url);
  const name = `llmproxy-smoke-${crypto.randomUUID().slice(0, 8)}`;
  names.push(name);
  const started = performance.now();
  const child = new Deno.Command(engine!, {
    args: [
      ...engineFlags,
      "run",
      "--name",
      name,
      "--network",
      "host",
      "--read-only",
      "-v",
      `${dir}:/config:ro`,
      ...(options.mounts ?? []).flatMap((mount) => ["-v", mount]),
      ...runFlags,
      TAG,
      "--log-level",
      "debug",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.push(child);
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    let text = "";
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
    return text;
  };
  const output = Promise.all([collect(child.stdout), collect(child.stderr)]).then((parts) =>
    parts.join("")
  );
  const admin = `http://127.0.0.1:${ports.admin}`;
  const deadline = performance.now() + 20_000;
  for (;;) {
    try {
      const ready = await fetch(`${admin}/ready`);
      await ready.body?.cancel();
      if (ready.status === 200) break;
    } catch { /* not listening yet */ }
    if (performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Failure(`/ready did not answer 200 within 20 s:\n${await output}`);
    }
    await delay(100);
  }
  return {
    name,
    forward: `http://127.0.0.1:${ports.forward}`,
    admin,
    child,
    output,
    startMs: performance.now() - started,
  };
}

/** The container's exit code, within `ms` (else it is killed and this fails). */
async function exitCode(r: Running, ms: number): Promise<number> {
  const timer = setTimeout(() => cli(["kill", "--signal", "KILL", r.name]), ms);
  const status = await r.child.status;
  clearTimeout(timer);
  const inspected = await cli(["inspect", "--format", "{{.State.ExitCode}}", r.name]);
  return inspected.code === 0 ? Number(inspected.out) : status.code;
}

/** Starts a slow SSE completion; `events` resolves with every event once the body ends. */
async function slowStream(r: Running, chunks: number, delayMs: number) {
  const response = await fetch(`${r.forward}/v1/chat/completions`, {
    method: "POST",
    headers: { "x-mock-chunks": String(chunks), "x-mock-delay-ms": String(delayMs) },
    // Bounded: a stream that never ends fails the check instead of hanging CI.
    signal: AbortSignal.timeout(30_000),
    body: JSON.stringify({ model: "m", stream: true, messages: [{ role: "user", content: "hi" }] }),
  });
  check(response.status === 200, `SSE status ${response.status}`);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const events: string[] = [];
  let first!: () => void;
  const firstEvent = new Promise<void>((resolve) => first = resolve);
  const all = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          events.push(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          first();
        }
      }
    } catch (error) {
      events.push(`<body aborted: ${(error as Error).message}>`);
    }
    first();
    return events;
  })();
  return { firstEvent, events: all };
}

const content = (events: readonly string[]) =>
  events.filter((e) => e.startsWith("data: {") && e.includes("chat.completion.chunk"));

let status = 0;
let size = "";
try {
  // Build.
  const built = performance.now();
  if (!Deno.args.includes("--no-build")) {
    await buildImage({
      runtime: "auto",
      tag: TAG,
      context: decodeURIComponent(new URL("../dist/image", import.meta.url).pathname),
      build: true,
      engine,
    });
  }
  const buildS = (performance.now() - built) / 1000;
  const inspect = await cli(["image", "inspect", "--format", "{{.Size}} {{.Config.User}}", TAG]);
  check(inspect.code === 0, `no image ${TAG}: ${inspect.err}`);
  const [bytes, user] = inspect.out.split(" ");
  size = `${(Number(bytes) / 1e6).toFixed(1)} MB`;
  check(Number(bytes) <= MAX_IMAGE_BYTES, `the image is ${size}, more than 110 MB`);
  check(user === "65532:65532", `the image's user is "${user}", not 65532:65532`);

  // No shell.
  const shell = await cli([
    "run",
    "--rm",
    ...runFlags,
    "--entrypoint",
    "/bin/sh",
    TAG,
    "-c",
    "true",
  ]);
  check(shell.code !== 0, "the image has a shell: /bin/sh ran");

  // Serve: JSON and SSE through the proxy to the mock, PID 1 not root.
  const r = await start(20);
  const pid = await cli(["inspect", "--format", "{{.State.Pid}}", r.name]);
  const uid = (await Deno.readTextFile(`/proc/${pid.out}/status`)).match(/^Uid:\s+(\d+)/m)?.[1];
  check(uid === "65532", `PID 1 runs as uid ${uid}, not 65532`);
  const health = await fetch(`${r.admin}/health`);
  await health.body?.cancel();
  check(health.status === 200, `/health ${health.status}`);
  const json = await fetch(`${r.forward}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
  });
  const body = await json.json();
  check(
    json.status === 200 && body.object === "chat.completion" &&
      json.headers.get("x-mock-upstream") === "image-mock",
    `JSON completion: ${json.status} ${JSON.stringify(body).slice(0, 200)}`,
  );
  const sse = await slowStream(r, 5, 10);
  const sseEvents = await sse.events;
  check(
    content(sseEvents).length === 5 && sseEvents.at(-1) === "data: [DONE]",
    `SSE completion: ${sseEvents.join(" | ").slice(0, 300)}`,
  );

  // SIGTERM mid-stream with time to drain: the stream finishes, the container exits 0.
  const drain = await slowStream(r, 20, 100);
  await drain.firstEvent;
  const killed = performance.now();
  const term = await cli(["kill", "--signal", "TERM", r.name]);
  check(term.code === 0, `${engine} kill: ${term.err}`);
  await delay(300);
  const refused = await fetch(`${r.forward}/v1/chat/completions`, { method: "POST", body: "{}" })
    .then(async (response) => {
      await response.body?.cancel();
      return false;
    }, () => true);
  const drained = await drain.events;
  const code = await exitCode(r, 15_000);
  const drainS = (performance.now() - killed) / 1000;
  const log = await r.output;
  check(
    content(drained).length === 20 && drained.at(-1) === "data: [DONE]",
    `the stream was cut by SIGTERM: ${drained.slice(-3).join(" | ")}\n${log}`,
  );
  check(refused, "a new request was served after SIGTERM");
  check(code === 0, `exit code ${code} after SIGTERM:\n${log}`);
  check(/shutting down/.test(log) && /stopped/.test(log), `no drain in the log:\n${log}`);
  // The config loader runs as a child process in the image too (Deno.execPath() is there).
  check(/config loaded in a child process/.test(log), `config not loaded by the child:\n${log}`);
  console.log(
    `image: drain OK (stream of 20 chunks finished, new connections refused, exit 0 ${
      drainS.toFixed(1)
    } s after SIGTERM; ready ${r.startMs.toFixed(0)} ms after run)`,
  );

  // SIGTERM with a drain deadline (1 s) shorter than the stream: the documented error event.
  const short = await start(1);
  const cut = await slowStream(short, 50, 100);
  await cut.firstEvent;
  await cli(["kill", "--signal", "TERM", short.name]);
  const cutEvents = await cut.events;
  const cutCode = await exitCode(short, 15_000);
  const cutLog = await short.output;
  check(
    cutEvents.some((e) => e.startsWith("event: error") && e.includes("shutting_down")) &&
      content(cutEvents).length < 50,
    `after the drain deadline: ${cutEvents.slice(-2).join(" | ")}\n${cutLog}`,
  );
  check(cutCode === 0, `exit code ${cutCode} after the drain deadline:\n${cutLog}`);
  console.log(
    `image: drain deadline OK (stream ended with the shutting_down error event after ${
      content(cutEvents).length
    } chunks, exit 0)`,
  );

  // Upstream TLS is checked against the image's CA bundle: a private CA is trusted once a
  // bundle holding it is mounted over /etc/ssl/certs/ca-certificates.crt.
  const tlsDir = new URL("../tests/_fixtures/tls/", import.meta.url);
  const tlsMock = await startMockUpstream({
    name: "image-tls-mock",
    tls: {
      cert: await Deno.readTextFile(new URL("server.pem", tlsDir)),
      key: await Deno.readTextFile(new URL("server.key", tlsDir)),
    },
  });
  try {
    const bundle = `${await configDir({ forward: 1, admin: 2 }, 1, "")}/ca-certificates.crt`;
    await Deno.writeTextFile(
      bundle,
      (await Deno.readTextFile("/etc/ssl/certs/ca-certificates.crt")) +
        (await Deno.readTextFile(new URL("ca.pem", tlsDir))),
    );
    await Deno.chmod(bundle, 0o644);
    const upstreamUrl = tlsMock.url.replace("127.0.0.1", "localhost");
    const results: number[] = [];
    for (const mounts of [[], [`${bundle}:/etc/ssl/certs/ca-certificates.crt:ro`]]) {
      const t = await start(1, { upstreamUrl, mounts });
      const response = await fetch(`${t.forward}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
      });
      await response.body?.cancel();
      results.push(response.status);
      await cli(["kill", "--signal", "TERM", t.name]);
      await exitCode(t, 15_000);
    }
    check(
      results[0] === 502 && results[1] === 200,
      `upstream TLS: ${
        results.join(", ")
      } (expected 502 with Debian's bundle, 200 with the CA added)`,
    );
    console.log("image: TLS OK (private CA refused, then trusted once mounted into the CA bundle)");
  } finally {
    await tlsMock.close();
  }
  if (buildS > 0.1) console.log(`image: built in ${buildS.toFixed(1)} s`);
} catch (error) {
  status = 1;
  console.error(error instanceof Failure ? error.message : error);
} finally {
  for (const name of names) await cli(["rm", "-f", name]).catch(() => {});
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
  }
  await mock.close();
  for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
}
console.log(status === 0 ? `image: OK ${size}` : "image: FAILED");
Deno.exit(status);
