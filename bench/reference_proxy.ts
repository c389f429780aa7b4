/**
 * The reference: a minimal pass-through proxy, the practical ceiling for a Deno proxy.
 * Deno.serve + fetch, request and response bodies streamed, hop-by-hop headers stripped.
 *
 * `deno run --allow-net bench/reference_proxy.ts --port N --upstream http://127.0.0.1:M`
 *
 * `--reuse-port`: bind with `SO_REUSEPORT` (Deno's `net` unstable flag, on in `deno.json`), so
 * several copies share one port: the harness's control for `--workers` (N processes that share
 * nothing, the best a second core can give any proxy on this machine).
 *
 * @module
 */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

function strip(headers: Headers): Headers {
  const out = new Headers(headers);
  for (const name of HOP_BY_HOP) out.delete(name);
  return out;
}

const arg = (flag: string) => Deno.args[Deno.args.indexOf(flag) + 1] ?? "";
const upstream = arg("--upstream");

const reusePort = Deno.args.includes("--reuse-port");
Deno.serve({ hostname: "127.0.0.1", port: Number(arg("--port")), reusePort }, async (req) => {
  const url = new URL(req.url);
  const res = await fetch(upstream + url.pathname + url.search, {
    method: req.method,
    headers: strip(req.headers),
    body: req.body,
    signal: req.signal,
  });
  return new Response(res.body, { status: res.status, headers: strip(res.headers) });
});
