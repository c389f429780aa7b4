/**
 * A fixed number of POSTs over keep-alive connections, then exit: the load for counting
 * instructions per request (`bench/instructions.sh`), where a count, not a duration, must be
 * fixed. Raw HTTP/1.1; each answer must be a 200 framed by `Content-Length` or chunked.
 *
 * `deno run --allow-net bench/fixed_load.ts --port N --requests 3000 [--connections 8]
 *   [--path /v1/chat/completions] [--key sk-...] [--body JSON]`
 *
 * @module
 */
const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i += 2) args.set(Deno.args[i]!, Deno.args[i + 1] ?? "");
const port = Number(args.get("--port"));
const total = Number(args.get("--requests") ?? 3000);
const connections = Number(args.get("--connections") ?? 8);
const path = args.get("--path") ?? "/v1/chat/completions";
const body = args.get("--body") ??
  '{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}';
const key = args.get("--key");
const bodyBytes = new TextEncoder().encode(body);
const request = new TextEncoder().encode(
  `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n` +
    (key ? `authorization: Bearer ${key}\r\n` : "") +
    `content-type: application/json\r\ncontent-length: ${bodyBytes.byteLength}\r\n\r\n${body}`,
);
const decoder = new TextDecoder();
let left = total;

/** Whether `text` (one answer so far) is complete; throws on anything but a 200. */
function complete(text: string): boolean {
  const headEnd = text.indexOf("\r\n\r\n");
  if (headEnd < 0) return false;
  if (!text.startsWith("HTTP/1.1 200")) throw new Error(`answer: ${text.slice(0, 200)}`);
  const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, headEnd));
  if (length) return text.length >= headEnd + 4 + Number(length[1]);
  return text.endsWith("\r\n0\r\n\r\n");
}

async function connection(): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buffer = new Uint8Array(64 * 1024);
  try {
    while (left-- > 0) {
      await conn.write(request);
      let text = "";
      while (!complete(text)) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error("the server closed the connection");
        text += decoder.decode(buffer.subarray(0, n));
      }
    }
  } finally {
    conn.close();
  }
}

if (!(port > 0 && total > 0 && connections > 0)) {
  console.error("usage: bench/fixed_load.ts --port N --requests N [--connections N] ...");
  Deno.exit(2);
}
await Promise.all(Array.from({ length: connections }, connection));
