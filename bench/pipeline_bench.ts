/**
 * The proxy's own per-request work, without sockets: `deno bench bench/pipeline_bench.ts`.
 * `deno run -A bench/pipeline_bench.ts --loop 200000` runs that many requests, 50 at a time, and
 * prints the process CPU time per request, and the heap in use, per round (`--rounds N`, 3 by
 * default; add `--cpu-prof` before the file for a profile);
 * with `--sse` the upstream answers with a stream of 20 events (in one read, as nginx sends a
 * canned one) that passes through the observing stream; `--no-model-routing` takes model
 * routing (groups' `models`, a `modelMap`) out of the config; `--fake-store` keeps the limits in
 * a shared store (`state.store: redis`'s code path) whose every check is answered at once, with
 * no client and no I/O: what the proxy's own side of the store checks costs.
 *
 * A forward on the benchmark's realistic config (two upstreams, round robin, breakers,
 * per-IP and per-upstream limits, a client key, metrics, the access log at info into a batched
 * sink) handles a chat request; the upstream is an in-process transport answering like nginx does (its head
 * parsed into the HTTP/1.1 client's `RawHeaders`, a 647-byte chat completion). What this costs
 * per request is what the proxy adds to the server and the socket I/O, measured without the
 * preemption and loopback noise of a load test; `--cpu-prof` shows where it goes.
 *
 * @module
 */
import { parseConfig } from "../src/config/load.ts";
import { Deadlines } from "../src/deadlines.ts";
import { batchedStderr, createLogger } from "../src/log.ts";
import { Runtime } from "../src/runtime.ts";
import { systemClock } from "../src/deps.ts";
import { Registry } from "../src/metrics/registry.ts";
import { createProxyMetrics } from "../src/metrics/proxy_metrics.ts";
import { observabilityHooks } from "../src/metrics/hooks.ts";
import { RawHeaders } from "../src/transport/http1/raw_headers.ts";
import type { Transport, UpstreamReply } from "../src/transport/transport.ts";
import { RemoteLimits, type ScriptRunner } from "../src/state/remote_limits.ts";
import { ScriptBatcher } from "../src/state/script_batch.ts";
import { BENCH_CLIENT_KEY, projectConfig } from "./targets.ts";
import { CHAT_STREAM } from "./canned_responses.ts";
import { ownCpuMicros } from "./procs.ts";

const COMPLETION = JSON.stringify({
  id: "chatcmpl-9xYzAbCdEfGhIjKlMnOpQrStUv",
  object: "chat.completion",
  created: 1733011200,
  model: "gpt-4o-mini-2024-07-18",
  choices: [{
    index: 0,
    message: { role: "assistant", content: "Hello! How can I help you today?", refusal: null },
    logprobs: null,
    finish_reason: "stop",
  }],
  usage: {
    prompt_tokens: 9,
    completion_tokens: 20,
    total_tokens: 29,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
  },
  system_fingerprint: "fp_0ba0d124f1",
});
const BODY = new TextEncoder().encode(COMPLETION);
/** nginx's response head for a body of `type` and `length`, as the HTTP/1.1 client parses it. */
function nginxHead(type: string, length: number): string[] {
  return [
    ...["Server", "nginx/1.22.1", "Date", "Tue, 01 Dec 2026 04:44:55 GMT"],
    ...["Content-Type", type, "Content-Length", String(length), "Connection", "keep-alive"],
  ];
}

const SSE = Deno.args.includes("--sse");
const STREAM = new TextEncoder().encode(CHAT_STREAM);

/** The whole body in one read, then its end: what the HTTP/1.1 client's reader gives. */
function oneChunkReader(bytes: Uint8Array) {
  let sent = false;
  return {
    read: (): Promise<ReadableStreamReadResult<Uint8Array>> => {
      if (sent) return Promise.resolve({ done: true, value: undefined });
      sent = true;
      return Promise.resolve({ done: false, value: bytes.slice() });
    },
    cancel: () => Promise.resolve(),
  };
}

/** Answers every request at once, like the HTTP/1.1 client reading nginx's answer. */
const transport: Transport = {
  kind: "http1",
  kindFor: () => "http1",
  send(): Promise<UpstreamReply> {
    return Promise.resolve({
      status: 200,
      statusText: "OK",
      headers: new RawHeaders(
        SSE
          ? nginxHead("text/event-stream", STREAM.byteLength)
          : nginxHead("application/json", BODY.byteLength),
      ),
      hasBody: true,
      body: null,
      reader: () => oneChunkReader(SSE ? STREAM : BODY),
      bytes: () => Promise.resolve((SSE ? STREAM : BODY).slice()),
    });
  },
  close() {},
};

// The access log goes through the batched sink into nothing: formatting is measured, the
// write to stderr is not.
const sink = batchedStderr({ writeSync: (bytes) => bytes.byteLength });
sink.startBatching();
const log = createLogger({ level: "info", write: sink.write });
const loaded = parseConfig(
  projectConfig(0, 0, "http://127.0.0.1:1", undefined, !Deno.args.includes("--no-model-routing")),
  "bench.yaml",
  () => "",
);
const deadlines = new Deadlines(systemClock);
const hooks = observabilityHooks(createProxyMetrics(new Registry()), { log, clock: systemClock });

/** Every operation's answer when nothing is refused (see `redis_scripts.ts`). */
const FAKE_ANSWERS: Record<string, unknown> = {
  bucket_take: [1, "999999"],
  key_admit: [0, 0, 0],
  key_charge: 0,
  upstream_acquire: [1, 0, 0],
  upstream_cool_down: 1,
};

/** The Redis store's batcher in front of a store that answers at once (`--fake-store`). */
function fakeStore(): RemoteLimits {
  const batcher = new ScriptBatcher({
    send: (calls) =>
      Promise.resolve(calls.map((c) => FAKE_ANSWERS[c.script.name] ?? c.keys.map(() => -2))),
    clock: systemClock,
    timeoutMs: 50,
  });
  const runner: ScriptRunner = {
    run: (script, keys, args) => batcher.run(script, keys, args),
    ping: () => Promise.resolve("PONG"),
    close: () => Promise.resolve(),
  };
  return new RemoteLimits({
    runner,
    prefix: "bench:",
    onStoreError: "local",
    clock: systemClock,
    log,
    onCall: hooks.onStoreCall,
  });
}

const runtime = new Runtime(loaded.config, {
  clock: systemClock,
  random: Math.random,
  log,
  deadlines,
  createTransport: () => transport,
  hooks,
  ...(Deno.args.includes("--fake-store") ? { limits: fakeStore() } : {}),
});
const forward = runtime.forwards.get("bench")!;
const REQUEST_BODY = '{"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]}';

/** The chat request a client sends, with `headers` added. */
function chatRequest(headers: Record<string, string> = {}): Request {
  return new Request("http://127.0.0.1:3000/v1/chat/completions", {
    method: "POST",
    headers: {
      host: "127.0.0.1:3000",
      "content-type": "application/json",
      "content-length": String(REQUEST_BODY.length),
      ...headers,
    },
    body: REQUEST_BODY,
  });
}

async function once(): Promise<void> {
  const request = chatRequest({ authorization: `Bearer ${BENCH_CLIENT_KEY}` });
  const response = await forward.handle(request, "127.0.0.1");
  if (response.status !== 200) throw new Error(`status ${response.status}`);
  // A stream is read to its end, as the server would; a whole body is already built.
  if (SSE) await response.bytes();
  else await response.body?.cancel();
}

/** The request and response objects alone: what any Deno proxy pays, for comparison. */
async function baseline(): Promise<void> {
  await chatRequest().bytes();
  const response = new Response(BODY.slice(), {
    status: 200,
    headers: { "content-type": "application/json", "content-length": String(BODY.byteLength) },
  });
  await response.body?.cancel();
}

/** `count` runs of `fn`, `concurrency` at a time; µs of process CPU per run. */
async function loop(fn: () => Promise<void>, count: number, concurrency = 50): Promise<number> {
  let left = count;
  const worker = async () => {
    while (left-- > 0) await fn();
  };
  const before = ownCpuMicros();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return (ownCpuMicros() - before) / count;
}

const loopAt = Deno.args.indexOf("--loop");
if (loopAt >= 0) {
  const count = Number(Deno.args[loopAt + 1] ?? 100_000);
  await loop(once, 20_000); // warm-up: JIT, metric series, pools
  await loop(baseline, 20_000);
  const roundsAt = Deno.args.indexOf("--rounds");
  const rounds = roundsAt >= 0 ? Number(Deno.args[roundsAt + 1]) : 3;
  for (let round = 1; round <= rounds; round++) {
    const base = await loop(baseline, count);
    const proxy = await loop(once, count);
    console.log(
      `round ${round}: baseline ${base.toFixed(1)} µs, pipeline ${proxy.toFixed(1)} µs ` +
        `(+${(proxy - base).toFixed(1)} µs of the proxy's own work per request), ` +
        `heap ${(Deno.memoryUsage().heapUsed / 2 ** 20).toFixed(1)} MiB`,
    );
  }
  sink.flush();
} else {
  Deno.bench("request objects alone (baseline)", baseline);
  Deno.bench("proxy pipeline, realistic config", once);
}
