/**
 * The kinds of upstream the throughput scenarios run against, which of them this machine can
 * run, and starting one:
 *
 * - `mock`: the project's mock (`tools/mock_upstream.ts`, Deno), small answers, SSE events
 *   written one by one. Always available; scenarios c and d use it too.
 * - `nginx`: nginx with canned OpenAI-sized answers over plain HTTP. A server in C: the
 *   proxies' costs are not hidden behind a slow upstream on the same cores.
 * - `tls`: the same nginx over HTTPS with a private CA, as a remote provider is reached.
 *
 * @module
 */
import { CHAT_COMPLETION, CHAT_STREAM, STREAM_CHUNKS } from "./canned_responses.ts";
import { findNginx, NGINX_INSTALL, startNginxUpstream } from "./nginx.ts";
import type { StartOptions, Upstream } from "./targets.ts";
import { hasOpenssl, makeTestPki, type TestPki } from "./tls_ca.ts";

/** Every kind, in the order they run. */
export const UPSTREAM_KINDS = ["mock", "nginx", "tls"] as const;
/** One kind of upstream. */
export type UpstreamKind = typeof UPSTREAM_KINDS[number];

/** What the kinds other than `mock` need, found or made by {@linkcode prepareUpstreams}. */
export interface UpstreamSetup {
  /** The kinds that will run, in order. */
  kinds: UpstreamKind[];
  nginx?: { bin: string; version: string };
  pki?: TestPki;
}

/**
 * Checks which of `wanted` can run here (nginx; openssl for `tls`) and makes the TLS
 * certificates in `dir`. A kind that cannot run is left out with a note saying how to get
 * what it needs.
 */
export async function prepareUpstreams(
  wanted: readonly UpstreamKind[],
  dir: string,
  notes: string[],
): Promise<UpstreamSetup> {
  const setup: UpstreamSetup = { kinds: [] };
  const needsNginx = wanted.some((k) => k !== "mock");
  if (needsNginx) setup.nginx = await findNginx();
  for (const kind of UPSTREAM_KINDS) {
    if (!wanted.includes(kind)) continue;
    if (kind !== "mock" && !setup.nginx) {
      notes.push(`upstream ${kind} skipped: nginx not found (${NGINX_INSTALL})`);
      continue;
    }
    if (kind === "tls") {
      if (!(await hasOpenssl())) {
        notes.push("upstream tls skipped: openssl not found (apt-get install -y openssl)");
        continue;
      }
      try {
        setup.pki = await makeTestPki(dir);
      } catch (error) {
        notes.push(`upstream tls skipped: ${error instanceof Error ? error.message : error}`);
        continue;
      }
    }
    setup.kinds.push(kind);
  }
  return setup;
}

/** Starts an upstream of `kind` (not `mock`, which the harness starts first). */
export function startUpstream(
  kind: Exclude<UpstreamKind, "mock">,
  setup: UpstreamSetup,
  o: StartOptions,
): Promise<Upstream> {
  if (!setup.nginx) throw new Error(`upstream ${kind} needs nginx`);
  return startNginxUpstream(setup.nginx.bin, { ...o, pki: kind === "tls" ? setup.pki : undefined });
}

/** One line for the report: what answers, and how. */
export function describeUpstream(kind: UpstreamKind, setup: UpstreamSetup): string {
  const canned = `canned OpenAI answers (${CHAT_COMPLETION.length}-byte JSON; SSE of ` +
    `${STREAM_CHUNKS} events + [DONE], ${CHAT_STREAM.length} bytes, as one ` +
    `length-delimited body)`;
  if (kind === "mock") {
    return "the project's mock (`tools/mock_upstream.ts`, Deno): ~270-byte JSON; SSE of " +
      `${STREAM_CHUNKS} events written one by one, chunked`;
  }
  if (kind === "nginx") return `${setup.nginx?.version}, plain HTTP: ${canned}`;
  return `${setup.nginx?.version} over TLS (a private CA, trusted with \`DENO_CERT\`; the ` +
    `project reaches HTTPS upstreams through \`fetch\`): ${canned}`;
}
