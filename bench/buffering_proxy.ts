/**
 * A deliberately buffering control proxy: it reads the whole upstream body, then responds.
 * The chunk-by-chunk check of `bench/run.ts` must report FAIL for it, which shows the check
 * can fail. Otherwise the same as `reference_proxy.ts`.
 *
 * `deno run --allow-net bench/buffering_proxy.ts --port N --upstream http://127.0.0.1:M`
 *
 * @module
 */
const HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"];

function strip(headers: Headers): Headers {
  const out = new Headers(headers);
  for (const name of HOP_BY_HOP) out.delete(name);
  return out;
}

const arg = (flag: string) => Deno.args[Deno.args.indexOf(flag) + 1] ?? "";
const upstream = arg("--upstream");

Deno.serve({ hostname: "127.0.0.1", port: Number(arg("--port")) }, async (req) => {
  const url = new URL(req.url);
  const res = await fetch(upstream + url.pathname + url.search, {
    method: req.method,
    headers: strip(req.headers),
    body: req.body,
    signal: req.signal,
  });
  const body = await res.arrayBuffer(); // the whole stream, then one write
  return new Response(body, { status: res.status, headers: strip(res.headers) });
});
