/**
 * CI check of the bundle: copies it into a temp dir, starts it with `deno run --no-config`
 * on a test config in front of the mock upstream, and checks that it answers.
 *
 * Usage: deno run --allow-all .ci/bundle_smoke.ts dist/llmproxy.js
 */
import { startMockUpstream } from "../tools/mock_upstream.ts";

const bundle = Deno.args[0];
if (!bundle) throw new Error("usage: bundle_smoke.ts BUNDLE");

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

const dir = await Deno.makeTempDir({ prefix: "llmproxy-bundle-" });
const mock = await startMockUpstream({ name: "bundle-mock" });
const port = freePort();
const adminPort = freePort();
await Deno.copyFile(bundle, `${dir}/llmproxy.js`);
await Deno.writeTextFile(
  `${dir}/config.yaml`,
  `httpServer:
  forwards: [{name: smoke, port: ${port}, address: 127.0.0.1, defaultGroup: g}]
  admin: {port: ${adminPort}}
upstreams:
  - {name: mock, url: "${mock.url}/v1/chat/completions"}
upstreamGroups:
  - {name: g, upstreams: [{name: mock}]}
`,
);

const child = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "--no-config",
    "--unstable-no-legacy-abort",
    "--unstable-net", // reusePort, for workers > 1
    "--allow-net",
    "--allow-read",
    "--allow-env",
    "--allow-run", // loads the config in a child process: the bundle starting itself
    "llmproxy.js",
    "--config",
    "config.yaml",
  ],
  cwd: dir,
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

let ok = false;
try {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !ok) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/api/v3/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m" }),
      });
      const body = await response.json();
      ok = response.status === 200 && body.object === "chat.completion" &&
        response.headers.get("x-mock-upstream") === "bundle-mock";
      const health = await fetch(`http://127.0.0.1:${adminPort}/health`);
      ok &&= health.status === 200;
      await health.body?.cancel();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
} finally {
  child.kill("SIGTERM");
  const status = await child.status;
  await mock.close();
  await Deno.remove(dir, { recursive: true });
  console.log(`bundle smoke: ${ok ? "OK" : "FAILED"} (bundle exited with ${status.code})`);
  if (!ok || status.code !== 0) Deno.exit(1);
}
