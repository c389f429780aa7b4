/**
 * The proxy loop in-process (Hono's `app.request` habit): a {@linkcode Runtime} on a YAML
 * config with a scripted fake transport, a {@linkcode FakeClock} (time and deadlines) and a
 * retry wait that moves that clock instead of sleeping. Requests go through `forward.handle(new Request(...))`: no sockets.
 *
 * @module
 */
import { parseConfig } from "../../src/config/load.ts";
import { Deadlines } from "../../src/deadlines.ts";
import { silentLogger } from "../../src/log.ts";
import { Runtime, type RuntimeDeps } from "../../src/runtime.ts";
import { fetchReply } from "../../src/transport/fetch.ts";
import { FakeClock } from "./fake_clock.ts";
import type { IdSource } from "../../src/deps.ts";
import type {
  SendInit,
  Transport,
  UpstreamReply,
  UpstreamTarget,
} from "../../src/transport/transport.ts";

/** What an upstream does with one request. */
export type Answer =
  | { status: number; headers?: Record<string, string>; body?: string }
  /** The send fails with `error` (a connect error unless it says otherwise). */
  | { error: unknown }
  /** No answer until the request is aborted; then the send rejects with the abort reason. */
  | "hang";

const OK: Answer = { status: 200, headers: { "content-type": "application/json" }, body: "{}" };

/** A transport whose upstreams (`a` for `a.test`) answer from scripts; 200 `{}` when unscripted. */
export class ScriptedTransport implements Transport {
  readonly kind = "http1" as const;
  /** Host names of the requests sent, in order. */
  readonly sent: string[] = [];
  /** Bodies of the requests sent, in order. */
  readonly bodies: (string | null)[] = [];
  readonly #scripts = new Map<string, Answer[]>();
  readonly #always = new Map<string, Answer>();

  kindFor(): "http1" {
    return this.kind;
  }

  /** `host` answers the next requests with `answers`, one each, then as before. */
  script(host: string, ...answers: Answer[]): void {
    this.#scripts.set(host, [...(this.#scripts.get(host) ?? []), ...answers]);
  }

  /** `host` answers every request with `answer` (undefined: back to 200 `{}`). */
  always(host: string, answer: Answer | undefined): void {
    if (answer) this.#always.set(host, answer);
    else this.#always.delete(host);
  }

  /** How many requests went to `host`. */
  count(host: string): number {
    return this.sent.filter((h) => h === host).length;
  }

  send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply> {
    const host = target.hostname.replace(/\.test$/, "");
    this.sent.push(host);
    this.bodies.push(init.body ? new TextDecoder().decode(init.body) : null);
    const answer = this.#scripts.get(host)?.shift() ?? this.#always.get(host) ?? OK;
    if (answer === "hang") {
      return new Promise((_, reject) => {
        if (init.signal.aborted) return reject(init.signal.reason);
        init.signal.addEventListener("abort", () => reject(init.signal.reason), { once: true });
      });
    }
    if ("error" in answer) return Promise.reject(answer.error);
    if (init.signal.aborted) return Promise.reject(init.signal.reason);
    const body = answer.body ?? "";
    const response = new Response(body, {
      status: answer.status,
      headers: {
        "content-length": String(new TextEncoder().encode(body).byteLength),
        ...answer.headers,
        "x-upstream": host,
      },
    });
    return Promise.resolve(fetchReply(response));
  }

  close(): void {}
}

/** A runtime on a scripted transport, a fake clock and a clock-moving retry wait. */
export interface LoopRuntime {
  readonly runtime: Runtime;
  readonly transport: ScriptedTransport;
  /** The clock of the runtime and its deadlines. */
  readonly clock: FakeClock;
  /** The fake clock's time, ms; tests move it forward (setting it runs no timer). */
  now: number;
  /** Retry waits asked for, ms. */
  readonly waits: number[];
  /** When true, a retry wait holds until its signal aborts (to test a shutdown during it). */
  holdWaits: boolean;
  /** Sends a request to forward `main`; resolves with status, headers and the body text. */
  request(
    init?: { path?: string; body?: string; signal?: AbortSignal },
  ): Promise<{ status: number; headers: Headers; text: string; code?: string }>;
}

/**
 * Builds a {@linkcode LoopRuntime} on `yaml` (one forward named `main`). With `realWait`, a
 * retry waits on the fake clock as in production (tests `advance` it) instead of the recording
 * wait.
 */
export function loopRuntime(
  yaml: string,
  options: { realWait?: boolean; ids?: IdSource } = {},
): LoopRuntime {
  const transport = new ScriptedTransport();
  const loaded = parseConfig(yaml, "test.yaml", () => undefined);
  const clock = new FakeClock(1_000_000);
  const loop: LoopRuntime = {
    transport,
    clock,
    get now() {
      return clock.now();
    },
    set now(value: number) {
      clock.set(value);
    },
    waits: [],
    holdWaits: false,
    runtime: undefined as unknown as Runtime,
    async request(init = {}) {
      const response = await loop.runtime.forwards.get("main")!.handle(
        new Request(`http://proxy.test${init.path ?? "/v1/chat/completions"}`, {
          method: "POST",
          body: init.body ?? '{"model":"m"}',
          ...(init.signal ? { signal: init.signal } : {}),
        }),
        "127.0.0.1",
      );
      const text = await response.text();
      let code: string | undefined;
      try {
        code = JSON.parse(text).error?.code;
      } catch { /* not JSON */ }
      return { status: response.status, headers: response.headers, text, code };
    },
  };
  const wait: RuntimeDeps["wait"] = (ms, { signal }) => {
    loop.waits.push(ms);
    if (signal.aborted) return Promise.reject(signal.reason);
    if (loop.holdWaits) {
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason), { once: true })
      );
    }
    clock.advance(ms);
    return Promise.resolve();
  };
  (loop as { runtime: Runtime }).runtime = new Runtime(loaded.config, {
    clock,
    random: () => 0.5,
    log: silentLogger,
    deadlines: new Deadlines(clock),
    createTransport: () => transport,
    ...(options.realWait ? {} : { wait }),
    ...(options.ids ? { ids: options.ids } : {}),
  });
  return loop;
}

/** A config: forward `main` → group `g` of upstreams named by their host (`a` is `a.test`). */
export function loopConfig(
  hosts: readonly string[],
  extra: { upstream?: string; group?: string } = {},
): string {
  const upstreams = hosts.map((h) =>
    `  - name: ${h}\n    url: "http://${h}.test/v1/chat/completions"\n${
      extra.upstream ? `    ${extra.upstream}\n` : ""
    }`
  ).join("");
  return `httpServer:
  forwards: [{name: main, port: 0, defaultGroup: g}]
upstreams:
${upstreams}upstreamGroups:
  - name: g
    upstreams: [${hosts.map((h) => `{name: ${h}}`).join(", ")}]
${extra.group ? `    ${extra.group}\n` : ""}`;
}
