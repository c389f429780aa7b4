import assert from "node:assert/strict";
import { parsePrometheusText, sampleValue } from "./prom_parser.ts";

const lines = (...l: string[]) => `${l.join("\n")}\n`;

const VALID_HISTOGRAM = [
  "# HELP h_seconds Latency.",
  "# TYPE h_seconds histogram",
  'h_seconds_bucket{g="a",le="0.1"} 1',
  'h_seconds_bucket{g="a",le="1"} 2',
  'h_seconds_bucket{g="a",le="+Inf"} 3',
  'h_seconds_sum{g="a"} 4.5',
  'h_seconds_count{g="a"} 3',
];

Deno.test("parsePrometheusText() parses families, escapes, special values and timestamps", () => {
  const parsed = parsePrometheusText(lines(
    "# HELP c_total Count \\\\ of\\nthings.",
    "# TYPE c_total counter",
    'c_total{a="x\\"y",b="1\\\\2\\n3",} 1.5e3',
    'c_total { a = "z" } 7 1700000000000',
    "# a plain comment",
    "",
    "untyped_thing NaN",
    "g -Inf",
    "g2 +Inf",
    ...VALID_HISTOGRAM,
  ));
  const c = parsed.get("c_total");
  assert.equal(c?.help, "Count \\ of\nthings.");
  assert.equal(c?.type, "counter");
  assert.deepEqual(c?.samples[0], {
    name: "c_total",
    labels: { a: 'x"y', b: "1\\2\n3" },
    value: 1500,
  });
  assert.equal(sampleValue(parsed, "c_total", { a: "z" }), 7);
  assert.ok(Number.isNaN(sampleValue(parsed, "untyped_thing")));
  assert.equal(parsed.get("untyped_thing")?.type, undefined);
  assert.equal(sampleValue(parsed, "g"), -Infinity);
  assert.equal(sampleValue(parsed, "g2"), Infinity);
  assert.equal(parsed.get("h_seconds")?.samples.length, 5);
  assert.equal(sampleValue(parsed, "h_seconds_bucket", { g: "a", le: "+Inf" }), 3);
  assert.equal(sampleValue(parsed, "h_seconds_count", { g: "a" }), 3);
  assert.equal(sampleValue(parsed, "h_seconds_count", { g: "b" }), undefined);
  assert.equal(sampleValue(parsed, "h_seconds_count"), undefined);
});

const MALFORMED: [string, string, RegExp][] = [
  ["duplicate HELP", lines("# HELP a A.", "# HELP a A again.", "a 1"), /duplicate HELP/],
  ["duplicate TYPE", lines("# TYPE a gauge", "# TYPE a gauge", "a 1"), /duplicate TYPE/],
  ["TYPE after samples", lines("a 1", "# TYPE a gauge"), /TYPE for "a" after its samples/],
  ["unknown TYPE", lines("# TYPE a countr"), /unknown type/],
  ["non-contiguous samples", lines("a 1", "b 1", 'a{x="1"} 2'), /not contiguous/],
  ["non-contiguous HELP", lines("a 1", "b 1", "# HELP a A."), /not contiguous/],
  ["metric name starting with a digit", lines("1a 1"), /invalid metric name/],
  ["metric name with a dash", lines("a-b 1"), /invalid metric name/],
  ["invalid name in HELP", lines("# HELP a-b A."), /invalid metric name/],
  ["label name starting with a digit", lines('a{1x="v"} 1'), /invalid label name/],
  ["reserved label name", lines('a{__name__="v"} 1'), /reserved label name/],
  ["duplicate label name", lines('a{x="1",x="2"} 1'), /duplicate label/],
  ["unquoted label value", lines("a{x=v} 1"), /expected '"'/],
  ["unterminated label value", lines('a{x="v} 1'), /unterminated/],
  ["missing label separator", lines('a{x="1" y="2"} 1'), /expected "," or "}"/],
  ["bad escape in label value", lines('a{x="\\t"} 1'), /bad escape/],
  ["trailing backslash in label value", lines('a{x="\\"} 1'), /unterminated|bad escape/],
  ["bad escape in HELP", lines('# HELP a quote \\" here'), /bad escape/],
  ["word as value", lines("a one"), /unparseable value/],
  ["hex value", lines("a 0x10"), /unparseable value/],
  ["Infinity spelled the JS way", lines("a Infinity"), /unparseable value/],
  ["missing value", lines('a{x="1"}'), /expected a value/],
  ["extra field", lines("a 1 2 3"), /expected a value/],
  ["float timestamp", lines("a 1 2.5"), /unparseable timestamp/],
  ["duplicate series", lines('a{x="1",y="2"} 1', 'a{y="2",x="1"} 2'), /duplicate series/],
  ["duplicate unlabelled series", lines("a 1", "a 2"), /duplicate series/],
  [
    "non-cumulative buckets",
    lines(
      "# TYPE h histogram",
      'h_bucket{le="1"} 5',
      'h_bucket{le="2"} 4',
      'h_bucket{le="+Inf"} 5',
      "h_sum 1",
      "h_count 5",
    ),
    /below previous/,
  ],
  [
    "non-monotonic le",
    lines(
      "# TYPE h histogram",
      'h_bucket{le="2"} 1',
      'h_bucket{le="1"} 1',
      'h_bucket{le="+Inf"} 1',
      "h_sum 1",
      "h_count 1",
    ),
    /le 1 after 2/,
  ],
  [
    "missing +Inf bucket",
    lines("# TYPE h histogram", 'h_bucket{le="1"} 1', "h_sum 1", "h_count 1"),
    /no \+Inf bucket/,
  ],
  [
    "_count differs from +Inf bucket",
    lines("# TYPE h histogram", 'h_bucket{le="+Inf"} 2', "h_sum 1", "h_count 3"),
    /_count 3 != \+Inf bucket 2/,
  ],
  [
    "missing _count",
    lines("# TYPE h histogram", 'h_bucket{le="+Inf"} 2', "h_sum 1"),
    /no _count/,
  ],
  [
    "bucket without le",
    lines("# TYPE h histogram", 'h_bucket{x="1"} 2'),
    /without le label/,
  ],
  ["bad le", lines("# TYPE h histogram", 'h_bucket{le="x"} 2'), /bad le/],
  ["histogram sample without suffix", lines("# TYPE h histogram", "h 1"), /without suffix/],
];

for (const [what, text, expected] of MALFORMED) {
  Deno.test(`parsePrometheusText() rejects ${what}`, () => {
    assert.throws(() => parsePrometheusText(text), expected);
  });
}

Deno.test("parsePrometheusText() checks each histogram series separately", () => {
  const text = lines(
    ...VALID_HISTOGRAM,
    'h_seconds_bucket{g="b",le="0.1"} 0',
    'h_seconds_bucket{g="b",le="+Inf"} 0',
    'h_seconds_sum{g="b"} 0',
    'h_seconds_count{g="b"} 1',
  );
  assert.throws(() => parsePrometheusText(text), /histogram "h_seconds" .*"b".*_count 1/);
});
