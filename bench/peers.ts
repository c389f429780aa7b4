/**
 * Peers measured beside the project (`--peers`): nginx as a reverse proxy (the non-LLM
 * ceiling) and the Portkey AI gateway on Node (an LLM gateway users pick). Each is optional:
 * what cannot be found or installed is skipped with a note.
 *
 * Portkey is installed with npm at harness time into `bench/.peers/portkey` (ignored by git),
 * pinned: `@portkey-ai/gateway@1.15.2` with `@hono/node-server@1.14.1` (on Node 20 later
 * versions of that adapter answer every streamed completion with a 500).
 *
 * @module
 */
import { findNginx, NGINX_INSTALL, startNginxProxy } from "./nginx.ts";
import { freePort, hasCommand, spawn, waitForPort } from "./procs.ts";
import { CHAT_PATH, fileOf, type StartOptions, type Target, type Upstream } from "./targets.ts";

const PORTKEY_VERSION = "1.15.2";
const HONO_NODE_SERVER_VERSION = "1.14.1";
const PORTKEY_DIR = new URL("./.peers/portkey/", import.meta.url).pathname;
const PORTKEY_ENTRY = `${PORTKEY_DIR}node_modules/@portkey-ai/gateway/build/start-server.js`;
const LOOPBACK = new URL("./portkey_loopback.mjs", import.meta.url).pathname;

/** The peers that could be made ready; a missing one is undefined. */
export interface Peers {
  /** The nginx binary, for `nginx-proxy`. */
  nginx?: string;
  /** The Portkey entry point (run with `node`). */
  portkey?: string;
}

/** The target names of the available peers, in the order {@linkcode startPeers} runs them. */
export function peerNames(peers: Peers): string[] {
  return [peers.nginx && "nginx-proxy", peers.portkey && "portkey"].filter((n) => !!n) as string[];
}

/**
 * Finds nginx and installs Portkey (when not installed already). Each peer that is not
 * available adds a note saying why and how to get it.
 */
export async function preparePeers(notes: string[], log: (line: string) => void): Promise<Peers> {
  const peers: Peers = {};
  const nginx = await findNginx();
  if (nginx) peers.nginx = nginx.bin;
  else notes.push(`peer nginx-proxy skipped: nginx not found (${NGINX_INSTALL})`);
  try {
    peers.portkey = await installPortkey(log);
  } catch (error) {
    notes.push(`peer portkey skipped: ${error instanceof Error ? error.message : error}`);
  }
  return peers;
}

async function installedVersion(pkg: string): Promise<string | undefined> {
  try {
    const text = await Deno.readTextFile(`${PORTKEY_DIR}node_modules/${pkg}/package.json`);
    return (JSON.parse(text) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** Installs the pinned Portkey gateway unless present; returns its entry point. */
async function installPortkey(log: (line: string) => void): Promise<string> {
  if (!(await hasCommand("node")) || !(await hasCommand("npm"))) {
    throw new Error("node and npm not found (apt-get install -y nodejs npm)");
  }
  if (
    await installedVersion("@portkey-ai/gateway") === PORTKEY_VERSION &&
    await installedVersion("@hono/node-server") === HONO_NODE_SERVER_VERSION
  ) return PORTKEY_ENTRY;
  log(`installing @portkey-ai/gateway@${PORTKEY_VERSION} into bench/.peers/portkey (npm)…`);
  await Deno.mkdir(PORTKEY_DIR, { recursive: true });
  // `overrides` pins the adapter for the gateway's own dependency on it too.
  await Deno.writeTextFile(
    `${PORTKEY_DIR}package.json`,
    JSON.stringify(
      {
        private: true,
        description: "Written by bench/peers.ts: the Portkey gateway, a peer in the benchmark",
        dependencies: {
          "@portkey-ai/gateway": PORTKEY_VERSION,
          "@hono/node-server": HONO_NODE_SERVER_VERSION,
        },
        overrides: { "@hono/node-server": HONO_NODE_SERVER_VERSION },
      },
      null,
      2,
    ) + "\n",
  );
  const out = await new Deno.Command("npm", {
    // --ignore-scripts: the gateway's postinstall (patch-package) has nothing to patch in the
    // published build, and nothing else needs to run.
    args: ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
    cwd: PORTKEY_DIR,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(180_000),
  }).output();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" ");
    throw new Error(`npm install of @portkey-ai/gateway@${PORTKEY_VERSION} failed: ${stderr}`);
  }
  return PORTKEY_ENTRY;
}

/**
 * The Portkey gateway in front of `upstream` as a custom OpenAI-compatible host: the route
 * travels in `x-portkey-*` headers on every request, and so does the upstream's own request
 * headers, which Portkey forwards only when named in `x-portkey-forward-headers`.
 */
export async function startPortkey(
  entry: string,
  upstream: Upstream,
  o: StartOptions,
): Promise<Target> {
  const port = freePort();
  const env: Record<string, string> = {};
  if (upstream.caFile) env.NODE_EXTRA_CA_CERTS = upstream.caFile;
  const cmd = ["node", "--import", LOOPBACK, entry, `--port=${port}`, "--headless"];
  const proc = spawn("portkey", cmd, { logFile: fileOf(o, "portkey", ".log"), cpu: o.cpu, env });
  await waitForPort(port, proc);
  return {
    name: "portkey",
    proc,
    origin: `http://127.0.0.1:${port}`,
    request(key) {
      const up = upstream.request(key);
      // Portkey appends /chat/completions to the custom host: the host carries the path prefix.
      const prefix = up.path.slice(0, up.path.length - CHAT_PATH.length);
      const own = up.headers ?? {};
      return {
        path: CHAT_PATH,
        headers: {
          ...own,
          "x-portkey-provider": "openai",
          "x-portkey-custom-host": `${upstream.origin}${prefix}/v1`,
          "authorization": "Bearer sk-bench",
          ...(Object.keys(own).length > 0
            ? { "x-portkey-forward-headers": Object.keys(own).join(",") }
            : {}),
        },
      };
    },
  };
}

/**
 * Starts the available peers in front of `upstream` (plain HTTP only): `nginx-proxy` and
 * `portkey`, in that order.
 */
export async function startPeers(
  peers: Peers,
  upstream: Upstream,
  o: StartOptions,
): Promise<Record<string, Target>> {
  const out: Record<string, Target> = {};
  if (peers.nginx) out["nginx-proxy"] = await startNginxProxy(peers.nginx, upstream, o);
  if (peers.portkey) out.portkey = await startPortkey(peers.portkey, upstream, o);
  return out;
}
