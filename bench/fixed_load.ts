/**
 * A fixed number of POSTs over keep-alive connections, then exit: the load for counting
 * instructions per request (`bench/instructions.sh`), where a count, not a duration, must be
 * fixed. Requests and responses go as in the overhead client (`overhead.ts`); every answer must
 * be a 2xx.
 *
 * `deno run --allow-net bench/fixed_load.ts --port N --requests 3000 [--connections 8]
 *   [--path /v1/chat/completions] [--key sk-...] [--body JSON]`
 *
 * @module
 */
import { ResponseReader } from "./http1_response.ts";
import { requestBytes, writeAll } from "./overhead.ts";

const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i += 2) args.set(Deno.args[i]!, Deno.args[i + 1] ?? "");
const port = Number(args.get("--port"));
const total = Number(args.get("--requests") ?? 3000);
const connections = Number(args.get("--connections") ?? 8);
if (!(port > 0 && total > 0 && connections > 0)) {
  console.error("usage: bench/fixed_load.ts --port N --requests N [--connections N] ...");
  Deno.exit(2);
}
const key = args.get("--key");
const request = requestBytes(
  new URL(args.get("--path") ?? "/v1/chat/completions", `http://127.0.0.1:${port}`),
  new TextEncoder().encode(
    args.get("--body") ?? '{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}',
  ),
  key ? [`Authorization: Bearer ${key}`] : [],
);
let left = total;

async function connection(): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new ResponseReader(conn);
  try {
    while (left-- > 0) {
      await writeAll(conn, request);
      const { status, keepAlive } = await reader.read();
      if (status < 200 || status > 299) throw new Error(`answered ${status}`);
      if (!keepAlive) throw new Error("the server closed the connection");
    }
  } finally {
    conn.close();
  }
}

await Promise.all(Array.from({ length: connections }, connection));
