import assert from "node:assert/strict";
import { Registry } from "../../src/metrics/registry.ts";
import { createProxyMetrics } from "../../src/metrics/proxy_metrics.ts";
import { observabilityHooks } from "../../src/metrics/hooks.ts";
import { silentLogger } from "../../src/log.ts";
import type { Runtime } from "../../src/runtime.ts";
import type { Group, GroupMember } from "../../src/upstream/group.ts";
import type { Upstream } from "../../src/upstream/upstream.ts";
import type { AttemptResult } from "../../src/upstream/attempt.ts";
import type { BodyEnd } from "../../src/stream/observe.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";

function setup() {
  const registry = new Registry();
  const hooks = observabilityHooks(createProxyMetrics(registry, { readRssBytes: () => 1 }), {
    log: silentLogger,
    clock: { now: () => 0 },
  });
  /** Label sets of the samples named `name` (`_count` of a histogram), as JSON, sorted. */
  const series = (name: string): string[] =>
    [...parsePrometheusText(registry.render()).values()].flatMap((f) => f.samples)
      .filter((s) => s.name === name).map((s) => JSON.stringify(s.labels)).sort();
  /** One sample's value, undefined when the series does not exist. */
  const value = (name: string, labels: Record<string, string>) =>
    sampleValue(parsePrometheusText(registry.render()), name, labels);
  return { hooks, series, value };
}

const upstream = (name: string, state = "closed") =>
  ({ name, breaker: { state: () => state } }) as unknown as Upstream;

/** A graph with these upstreams and forwards (what `onServing` reads). */
function graph(upstreams: Upstream[], forwards: string[]): Runtime {
  return {
    upstreams: new Map(upstreams.map((u) => [u.name, u])),
    forwards: new Map(forwards.map((f) => [f, {}])),
  } as unknown as Runtime;
}

function answer(
  hooks: ReturnType<typeof setup>["hooks"],
  g: string,
  u: string,
  status = 500,
): void {
  const result = {
    kind: "response",
    response: { status },
    outcome: { kind: "response" },
    verdict: "failure",
    firstByteMs: 5,
  } as unknown as AttemptResult;
  const member = { name: u, upstream: upstream(u) } as unknown as GroupMember;
  hooks.onAttempt!({ name: g } as Group, member, result);
  hooks.onRetry!({ name: g } as Group, result, 0);
}

Deno.test("observabilityHooks() labels breaker metrics by upstream only, once per change", () => {
  const { hooks, series } = setup();
  const shared = upstream("shared");
  hooks.onServing(graph([shared, upstream("tripped", "open")], ["main"]));
  hooks.onBreakerChange!(shared, "closed", "open");
  assert.deepEqual(series("llmproxy_circuit_breaker_state"), [
    `{"upstream":"shared"}`,
    `{"upstream":"tripped"}`,
  ]);
  assert.deepEqual(series("llmproxy_circuit_breaker_transitions_total"), [
    `{"upstream":"shared","from":"closed","to":"open"}`,
  ]);
});

Deno.test("observabilityHooks().forget() removes the series of names no live config has", () => {
  const { hooks, series } = setup();
  const [u1, u2] = [upstream("u1"), upstream("u2")];
  hooks.onServing(graph([u1, u2], ["main", "side"]));
  answer(hooks, "g", "u1");
  answer(hooks, "g", "u2");
  answer(hooks, "h", "u2");
  hooks.onBreakerChange!(u2, "closed", "open");
  hooks.onClientRateLimited!("side");
  hooks.onUpstreamRateLimited!({ name: "h" } as Group);
  hooks.onConnectionsOpen("side", 1);
  hooks.onConnectionClosed("side", "idle_timeout");

  hooks.forget(
    { forwards: ["main", "side"], groups: ["g", "h"], upstreams: ["u1", "u2"] },
    // u2 and group h are gone from the serving config; a retiring one still has forward side.
    [
      { forwards: ["main"], groups: ["g"], upstreams: ["u1"] },
      { forwards: ["side"], groups: [], upstreams: [] },
    ],
  );
  assert.deepEqual(series("llmproxy_upstream_requests_total"), [
    `{"group":"g","upstream":"u1","status":"500"}`,
  ]);
  assert.deepEqual(series("llmproxy_upstream_errors_total"), [
    `{"group":"g","upstream":"u1","kind":"status"}`,
  ]);
  assert.deepEqual(series("llmproxy_upstream_first_byte_seconds_count"), [
    `{"group":"g","upstream":"u1"}`,
  ]);
  assert.deepEqual(series("llmproxy_retries_total"), [`{"group":"g"}`]);
  assert.deepEqual(series("llmproxy_circuit_breaker_state"), [`{"upstream":"u1"}`]);
  assert.deepEqual(series("llmproxy_circuit_breaker_transitions_total"), []);
  assert.deepEqual(series("llmproxy_ratelimit_rejections_total"), [
    `{"scope":"forward","name":"side"}`,
  ]);
  assert.deepEqual(series("llmproxy_connections_open"), [`{"listener":"side"}`]);

  // Once the last graph naming "side" retires, its series go too.
  hooks.forget({ forwards: ["side"], groups: [], upstreams: [] }, [
    { forwards: ["main"], groups: ["g"], upstreams: ["u1"] },
  ]);
  assert.deepEqual(series("llmproxy_ratelimit_rejections_total"), []);
  assert.deepEqual(series("llmproxy_connections_open"), []);
  assert.deepEqual(series("llmproxy_connections_closed_total"), []);
});

Deno.test("observabilityHooks() lets a removed forward's draining connections leave no series", () => {
  const { hooks, series } = setup();
  hooks.onServing(graph([], ["main", "old"]));
  hooks.onConnectionsOpen("old", 2);
  hooks.onServing(graph([], ["main"]), graph([], ["main", "old"]));
  hooks.forget({ forwards: ["old"], groups: [], upstreams: [] }, [
    { forwards: ["main"], groups: [], upstreams: [] },
  ]);
  // The old listener drains after the swap: its closes are not counted, its last one removes it.
  hooks.onConnectionClosed("old", "idle_timeout");
  hooks.onConnectionsOpen("old", 1);
  hooks.onConnectionsOpen("old", 0);
  hooks.onConnectionsOpen("main", 0);
  hooks.onConnectionsOpen("admin", 1);
  assert.deepEqual(series("llmproxy_connections_open"), [
    `{"listener":"admin"}`,
    `{"listener":"main"}`,
  ]);
  assert.deepEqual(series("llmproxy_connections_closed_total"), []);
});

Deno.test("observabilityHooks() counts an upstream 429 and 5xx as kind=status, a 4xx as no error", () => {
  const { hooks, series } = setup();
  answer(hooks, "g", "limited", 429);
  answer(hooks, "g", "broken", 503);
  answer(hooks, "g", "picky", 404);
  assert.deepEqual(series("llmproxy_upstream_errors_total"), [
    `{"group":"g","upstream":"broken","kind":"status"}`,
    `{"group":"g","upstream":"limited","kind":"status"}`,
  ]);
  assert.equal(series("llmproxy_upstream_requests_total").length, 3);
});

const member = (name: string) => ({ name, upstream: upstream(name) }) as unknown as GroupMember;
const ended: BodyEnd = { kind: "end", bytes: 10 };

Deno.test("observabilityHooks().onBodyEnd() labels tokens with the model label, else other", () => {
  const { hooks, series, value } = setup();
  hooks.onBodyEnd!({ name: "g" } as Group, member("u"), ended, { prompt: 3, completion: 2 }, "o3*");
  hooks.onBodyEnd!({ name: "g" } as Group, member("u"), ended, { prompt: 4, completion: 0 });
  hooks.onBodyEnd!({ name: "g" } as Group, member("u"), ended, { prompt: 1, completion: 1 }, "o3*");
  assert.deepEqual(series("llmproxy_tokens_total"), [
    `{"group":"g","upstream":"u","model":"o3*","type":"completion"}`,
    `{"group":"g","upstream":"u","model":"o3*","type":"prompt"}`,
    `{"group":"g","upstream":"u","model":"other","type":"prompt"}`,
  ]);
  const tokens = (model: string, type: string) =>
    value("llmproxy_tokens_total", { group: "g", upstream: "u", model, type });
  assert.equal(tokens("o3*", "prompt"), 4);
  assert.equal(tokens("o3*", "completion"), 3);
  assert.equal(tokens("other", "prompt"), 4);
});

Deno.test("observabilityHooks().onTokenStream() gives the group's and upstream's token histograms", () => {
  const { hooks, series, value } = setup();
  const sink = hooks.onTokenStream!({ name: "g" } as Group, member("u"))!;
  sink.firstToken.observe(0.25);
  sink.interToken.observe(0.02);
  sink.interToken.observe(0);
  const labels = { group: "g", upstream: "u" };
  assert.equal(value("llmproxy_time_to_first_token_seconds_count", labels), 1);
  assert.equal(value("llmproxy_time_to_first_token_seconds_sum", labels), 0.25);
  assert.equal(value("llmproxy_inter_token_seconds_count", labels), 2);
  assert.equal(value("llmproxy_inter_token_seconds_sum", labels), 0.02);
  // The same series for the next stream of that pair.
  hooks.onTokenStream!({ name: "g" } as Group, member("u"))!.interToken.observe(0.01);
  assert.equal(value("llmproxy_inter_token_seconds_count", labels), 3);
  assert.deepEqual(series("llmproxy_inter_token_seconds_count"), [`{"group":"g","upstream":"u"}`]);
});

Deno.test("observabilityHooks().forget() removes token series of a gone group or upstream, whatever the model", () => {
  const { hooks, series } = setup();
  const report = (g: string, u: string, model?: string) => {
    hooks.onBodyEnd!({ name: g } as Group, member(u), ended, { prompt: 1, completion: 1 }, model);
    const sink = hooks.onTokenStream!({ name: g } as Group, member(u))!;
    sink.firstToken.observe(0.1);
    sink.interToken.observe(0.01);
  };
  report("g", "u1", "gpt-4o");
  report("g", "u1");
  report("g", "u2", "gpt-4o");
  report("h", "u1", "o3*");
  hooks.forget({ forwards: [], groups: ["g", "h"], upstreams: ["u1", "u2"] }, [
    { forwards: [], groups: ["g"], upstreams: ["u1"] },
  ]);
  assert.deepEqual(series("llmproxy_tokens_total"), [
    `{"group":"g","upstream":"u1","model":"gpt-4o","type":"completion"}`,
    `{"group":"g","upstream":"u1","model":"gpt-4o","type":"prompt"}`,
    `{"group":"g","upstream":"u1","model":"other","type":"completion"}`,
    `{"group":"g","upstream":"u1","model":"other","type":"prompt"}`,
  ]);
  for (const name of ["llmproxy_time_to_first_token_seconds", "llmproxy_inter_token_seconds"]) {
    assert.deepEqual(series(`${name}_count`), [`{"group":"g","upstream":"u1"}`], name);
  }
});
