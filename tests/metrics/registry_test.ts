import assert from "node:assert/strict";
import { formatNumber, PROMETHEUS_CONTENT_TYPE, Registry } from "../../src/metrics/registry.ts";
import { parsePrometheusText, sampleValue } from "../_helpers/prom_parser.ts";

Deno.test("Registry.render() writes the exact text format for a small registry", () => {
  const registry = new Registry();
  const requests = registry.counter("app_requests_total", "Requests served.", ["route", "code"]);
  const up = registry.gauge("app_up", "Whether the app is up.\nMultiline \\ help.", []);
  const latency = registry.histogram("app_latency_seconds", "Latency.", ["route"], [0.1, 1]);

  requests.labels("/a", "200").inc();
  requests.labels("/a", "200").inc(2);
  requests.labels("/b", "500").inc();
  up.labels().set(1);
  const a = latency.labels("/a");
  a.observe(0.05);
  a.observe(0.5);
  a.observe(0.1); // on a bound: le is inclusive
  a.observe(3);

  assert.equal(
    registry.render(),
    [
      "# HELP app_requests_total Requests served.",
      "# TYPE app_requests_total counter",
      'app_requests_total{route="/a",code="200"} 3',
      'app_requests_total{route="/b",code="500"} 1',
      "# HELP app_up Whether the app is up.\\nMultiline \\\\ help.",
      "# TYPE app_up gauge",
      "app_up 1",
      "# HELP app_latency_seconds Latency.",
      "# TYPE app_latency_seconds histogram",
      'app_latency_seconds_bucket{route="/a",le="0.1"} 2',
      'app_latency_seconds_bucket{route="/a",le="1"} 3',
      'app_latency_seconds_bucket{route="/a",le="+Inf"} 4',
      'app_latency_seconds_sum{route="/a"} 3.65',
      'app_latency_seconds_count{route="/a"} 4',
      "",
    ].join("\n"),
  );
  assert.equal(PROMETHEUS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("Registry.render() is empty for an empty registry and lists families without samples", () => {
  const registry = new Registry();
  assert.equal(registry.render(), "");
  registry.counter("x_total", "X.", ["a"]);
  assert.equal(registry.render(), "# HELP x_total X.\n# TYPE x_total counter\n");
});

Deno.test("Registry.render() escapes backslash, double quote and newline in label values", () => {
  const registry = new Registry();
  const c = registry.counter("esc_total", "Escaping.", ["v"]);
  c.labels('a"b').inc();
  c.labels("c\\d").inc();
  c.labels("e\nf").inc();
  c.labels("plain").inc();
  const text = registry.render();
  assert.ok(text.includes('esc_total{v="a\\"b"} 1\n'));
  assert.ok(text.includes('esc_total{v="c\\\\d"} 1\n'));
  assert.ok(text.includes('esc_total{v="e\\nf"} 1\n'));

  const parsed = parsePrometheusText(text);
  assert.equal(sampleValue(parsed, "esc_total", { v: 'a"b' }), 1);
  assert.equal(sampleValue(parsed, "esc_total", { v: "c\\d" }), 1);
  assert.equal(sampleValue(parsed, "esc_total", { v: "e\nf" }), 1);
});

Deno.test("Histogram buckets are cumulative and _count equals the +Inf bucket", () => {
  const registry = new Registry();
  const h = registry.histogram("h_seconds", "H.", [], [1, 2, 3]);
  const child = h.labels();
  for (const v of [0.5, 1.5, 1.5, 2.5, 2.5, 2.5, 10, NaN]) child.observe(v);
  assert.deepEqual(child.cumulativeCounts(), [1, 3, 6, 8]);
  assert.equal(child.count, 8);
  const parsed = parsePrometheusText(registry.render());
  assert.equal(sampleValue(parsed, "h_seconds_bucket", { le: "1" }), 1);
  assert.equal(sampleValue(parsed, "h_seconds_bucket", { le: "2" }), 3);
  assert.equal(sampleValue(parsed, "h_seconds_bucket", { le: "3" }), 6);
  assert.equal(sampleValue(parsed, "h_seconds_bucket", { le: "+Inf" }), 8);
  assert.equal(sampleValue(parsed, "h_seconds_count"), 8);
  assert.ok(Number.isNaN(sampleValue(parsed, "h_seconds_sum")));
});

Deno.test("Family.labels() returns the same cached child for the same values", () => {
  const registry = new Registry();
  const c = registry.counter("c_total", "C.", ["a", "b"]);
  const child = c.labels("x", "y");
  assert.equal(c.labels("x", "y"), child);
  assert.notEqual(c.labels("x", "z"), child);
  // Values containing the internal separator must not collide.
  assert.notEqual(c.labels("x\0y", "z"), c.labels("x", "y\0z"));
  const g = registry.gauge("g", "G.", []);
  assert.equal(g.labels(), g.labels());
  assert.equal(c.size, 4);
});

Deno.test("Family.labels() throws on a wrong number of label values", () => {
  const registry = new Registry();
  const c = registry.counter("c_total", "C.", ["a", "b"]);
  const loose = c as unknown as {
    labels(...v: string[]): unknown;
    remove(...v: string[]): unknown;
  };
  assert.throws(() => loose.labels("x"), /expects 2 label value\(s\) \(a, b\), got 1/);
  assert.throws(() => loose.labels("x", "y", "z"), RangeError);
  assert.throws(() => loose.remove("x"), RangeError);
  const g = registry.gauge("g", "G.", []) as unknown as { labels(...v: string[]): unknown };
  assert.throws(() => g.labels("x"), RangeError);
});

Deno.test("Registry throws on duplicate and colliding registrations", () => {
  const registry = new Registry();
  registry.counter("dup_total", "D.", []);
  assert.throws(() => registry.counter("dup_total", "D.", []), /already registered/);
  assert.throws(() => registry.gauge("dup_total", "D.", []), /already registered/);
  registry.histogram("lat", "L.", [], [1]);
  assert.throws(
    () => registry.counter("lat_count", "C.", []),
    /"lat_count" is already used by "lat"/,
  );
  registry.gauge("other_sum", "S.", []);
  assert.throws(() => registry.histogram("other", "O.", [], [1]), /already used/);
});

Deno.test("Registry validates metric names, label names and buckets", () => {
  const registry = new Registry();
  assert.throws(() => registry.counter("1bad", "B.", []), TypeError);
  assert.throws(() => registry.counter("bad-name", "B.", []), TypeError);
  assert.doesNotThrow(() => registry.counter("ns:ok_total", "OK.", ["_x", "a1"]));
  assert.throws(() => registry.counter("l1", "B.", ["1a"]), /label name "1a"/);
  assert.throws(() => registry.counter("l2", "B.", ["__reserved"]), /not start with __/);
  assert.throws(() => registry.counter("l3", "B.", ["a:b"]), TypeError);
  assert.throws(() => registry.counter("l4", "B.", ["a", "a"]), /duplicate label name/);
  assert.throws(() => registry.histogram("l5", "B.", ["le"], [1]), /"le" is reserved/);
  assert.throws(() => registry.counter("l6", "", []), /help text is empty/);
  assert.throws(() => registry.histogram("b1", "B.", [], [1, 1]), RangeError);
  assert.throws(() => registry.histogram("b2", "B.", [], [2, 1]), RangeError);
  assert.throws(() => registry.histogram("b3", "B.", [], [NaN]), RangeError);
  const h = registry.histogram("b4", "B.", [], [1, Infinity]);
  assert.deepEqual(h.buckets, [1]);
});

Deno.test("Family.remove() and reset() drop series from the output", () => {
  const registry = new Registry();
  const c = registry.counter("r_total", "R.", ["upstream"]);
  const a = c.labels("a");
  a.inc();
  c.labels("b").inc();
  assert.equal(c.remove("a"), true);
  assert.equal(c.remove("a"), false);
  a.inc(); // detached: harmless, not rendered
  let parsed = parsePrometheusText(registry.render());
  assert.equal(sampleValue(parsed, "r_total", { upstream: "a" }), undefined);
  assert.equal(sampleValue(parsed, "r_total", { upstream: "b" }), 1);
  assert.equal(c.labels("a").value, 0); // a fresh child after removal

  c.reset();
  parsed = parsePrometheusText(registry.render());
  assert.equal(parsed.get("r_total")?.samples.length, 0);

  const g = registry.gauge("solo", "S.", []);
  g.labels().set(5);
  g.reset();
  assert.equal(sampleValue(parsePrometheusText(registry.render()), "solo"), 0);
});

Deno.test("Family.removeWhere() drops every series with one label value, whatever the others", () => {
  const registry = new Registry();
  const c = registry.counter("w_total", "W.", ["group", "upstream", "status"]);
  c.labels("g1", "gone", "200").inc();
  c.labels("g2", "gone", "500").inc();
  c.labels("g1", "kept", "200").inc(2);
  c.labels("gone", "kept", "200").inc(3); // the value under another label stays
  assert.equal(c.removeWhere("upstream", "gone"), 2);
  assert.equal(c.removeWhere("upstream", "gone"), 0);
  const parsed = parsePrometheusText(registry.render());
  assert.deepEqual(
    parsed.get("w_total")?.samples.map((s) => [s.labels.group, s.labels.upstream, s.value]),
    [["g1", "kept", 2], ["gone", "kept", 3]],
  );
  assert.equal(c.size, 2);
  // A name that comes back starts from zero, and the kept children are still the cached ones.
  assert.equal(c.labels("g1", "gone", "200").value, 0);
  assert.equal(c.labels("g1", "kept", "200").value, 2);
  assert.equal(c.removeWhere("group", "g1"), 2);
  assert.equal(c.size, 1);
  const loose = c as unknown as { removeWhere(label: string, value: string): number };
  assert.throws(() => loose.removeWhere("nope", "x"), /has no label "nope"/);
});

Deno.test("Family.remove() of a multi-label series keeps its siblings", () => {
  const registry = new Registry();
  const c = registry.counter("s_total", "S.", ["a", "b"]);
  const xy = c.labels("x", "y");
  const xz = c.labels("x", "z");
  assert.equal(c.remove("x", "y"), true);
  assert.equal(c.remove("x", "y"), false);
  assert.equal(c.remove("q", "y"), false);
  assert.equal(c.labels("x", "z"), xz);
  assert.notEqual(c.labels("x", "y"), xy);
  assert.equal(c.size, 2);
});

Deno.test("Registry.onCollect() runs callbacks at render time until unregistered", () => {
  const registry = new Registry();
  const g = registry.gauge("collected", "C.", []).labels();
  let calls = 0;
  const off = registry.onCollect(() => g.set(++calls));
  assert.ok(registry.render().includes("collected 1\n"));
  assert.ok(registry.render().includes("collected 2\n"));
  off();
  assert.ok(registry.render().includes("collected 2\n"));
});

Deno.test("CounterChild.inc() rejects negative and NaN increments; GaugeChild moves both ways", () => {
  const registry = new Registry();
  const c = registry.counter("neg_total", "N.", []).labels();
  assert.throws(() => c.inc(-1), RangeError);
  assert.throws(() => c.inc(NaN), RangeError);
  c.inc(0.5);
  assert.equal(c.value, 0.5);
  const g = registry.gauge("gg", "G.", []).labels();
  g.inc();
  g.inc(4);
  g.dec(2);
  g.add(-10);
  assert.equal(g.value, -7);
  g.set(42);
  assert.equal(g.value, 42);
});

Deno.test("formatNumber() prints integers without exponent and special values as Prometheus does", () => {
  assert.equal(formatNumber(0), "0");
  assert.equal(formatNumber(-0), "0");
  assert.equal(formatNumber(42), "42");
  assert.equal(formatNumber(-3), "-3");
  assert.equal(formatNumber(1e21), "1000000000000000000000");
  assert.equal(formatNumber(2 ** 70), "1180591620717411303424");
  assert.equal(formatNumber(0.25), "0.25");
  assert.equal(formatNumber(Infinity), "+Inf");
  assert.equal(formatNumber(-Infinity), "-Inf");
  assert.equal(formatNumber(NaN), "NaN");
  const registry = new Registry();
  const g = registry.gauge("big", "B.", ["k"]);
  g.labels("inf").set(Infinity);
  g.labels("ninf").set(-Infinity);
  g.labels("nan").set(NaN);
  g.labels("huge").set(1e22);
  const text = registry.render();
  assert.ok(text.includes('big{k="inf"} +Inf\n'));
  assert.ok(text.includes('big{k="ninf"} -Inf\n'));
  assert.ok(text.includes('big{k="nan"} NaN\n'));
  assert.ok(text.includes('big{k="huge"} 10000000000000000000000\n'));
  parsePrometheusText(text);
});
