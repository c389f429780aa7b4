import assert from "node:assert/strict";
import { ABSENT, RequestBody, topLevelMembers, UNREADABLE } from "../../src/pipeline/json_body.ts";
import { seededRandom } from "../_helpers/seeded_random.ts";

const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array | null) => bytes === null ? null : new TextDecoder().decode(bytes);
const body = (text: string) => new RequestBody(enc(text));

Deno.test("RequestBody: the model of a JSON object body; nothing for other bodies", () => {
  assert.equal(body('  {"messages":[],"model":"gpt-4o"}').model(), "gpt-4o");
  assert.equal(body('{"model":7}').model(), undefined);
  assert.equal(body('["model"]').model(), undefined);
  assert.equal(body("model=gpt-4o").model(), undefined);
  assert.equal(body('{"model":"x"').model(), undefined, "truncated JSON");
  assert.equal(new RequestBody(null).model(), undefined);
  assert.equal(body('{"model":"a","model":"b"}').model(), "b", "JSON keeps the last");
});

Deno.test("RequestBody: each member read once, the prompt never parsed", () => {
  const original = JSON.parse;
  const parsed: string[] = [];
  JSON.parse = (...args: Parameters<typeof JSON.parse>) => {
    parsed.push(args[0]);
    return original(...args);
  };
  try {
    const b = body('{"messages":[{"role":"user","content":"hi"}],"model":"m","stream":true}');
    b.model();
    b.model();
    b.withModel("other");
    b.member("stream");
    b.member("stream");
    assert.deepEqual(parsed, ['"m"', "true"], "only the members' own bytes");
    const upload = body("--boundary\r\n");
    upload.model();
    assert.equal(parsed.length, 2, "a body that does not start with { is not parsed");
  } finally {
    JSON.parse = original;
  }
});

Deno.test("RequestBody: a top level that is not JSON has no members", () => {
  for (
    const text of [
      '{"model":"x",}',
      '{"model":"x" "a":1}',
      '{"model":"x"} trailing',
      '{"model":"x"',
      '{"model" "x"}',
      '{model:"x"}',
      '{"model":}',
      '{,"model":"x"}',
    ]
  ) {
    assert.equal(body(text).model(), undefined, text);
    assert.equal(dec(body(text).withModel("y")), text, text);
  }
  // Nested values are skipped, not validated: the upstream refuses what is broken inside.
  assert.equal(body('{"messages":[1 2],"model":"x"}').model(), "x");
  // A UTF-8 byte order mark (Python's reader skips it) and blanks around the object.
  const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...enc(' {"model":"x"}\n')]);
  assert.equal(new RequestBody(bom).model(), "x");
});

Deno.test("withModel: only the model's bytes change, whitespace and order kept", () => {
  const text = '{ "messages" : [{"role":"user","content":"say \\"model\\": \\"x\\""}],\n' +
    '  "model" :  "gpt-4o" , "metadata": {"model": "gpt-4o"}, "stream": false }';
  const out = dec(body(text).withModel("Qwen/Qwen2.5-72B-Instruct"));
  assert.equal(out, text.replace('"model" :  "gpt-4o"', '"model" :  "Qwen/Qwen2.5-72B-Instruct"'));
  assert.deepEqual(JSON.parse(out!).metadata, { model: "gpt-4o" }, "nested members untouched");
});

Deno.test("withModel: every top-level duplicate is replaced; escaped keys are found", () => {
  assert.equal(
    dec(body('{"model":"a","x":1,"model":"b"}').withModel("c")),
    '{"model":"c","x":1,"model":"c"}',
  );
  assert.equal(dec(body('{"mod\\u0065l":"a"}').withModel("c")), '{"mod\\u0065l":"c"}');
  assert.equal(
    dec(body('{"model":"a\\\\","k":"\\\\\\""}').withModel('q"uote')),
    '{"model":"q\\"uote","k":"\\\\\\""}',
    "backslashes before quotes counted",
  );
});

Deno.test("withModel: a model is added when the body names none; other bodies pass as they are", () => {
  assert.equal(dec(body('{"messages":[]}').withModel("m")), '{"model":"m","messages":[]}');
  assert.equal(dec(body(" { } ").withModel("m")), ' {"model":"m" } ');
  assert.equal(dec(body("not json").withModel("m")), "not json");
  assert.equal(new RequestBody(null).withModel("m"), null);
  const same = body('{"model":"m"}');
  assert.equal(same.withModel("m"), same.bytes, "no copy when the model is already right");
});

Deno.test("withModel: after replace() the new bytes are the base", () => {
  const b = body('{"model":"m","stream":true}');
  b.replace(enc('{"stream_options":{"include_usage":true},"model":"m","stream":true}'));
  assert.equal(
    dec(b.withModel("n")),
    '{"stream_options":{"include_usage":true},"model":"n","stream":true}',
  );
});

Deno.test("topLevelMembers: nested objects, arrays and strings with braces are skipped", () => {
  const text = '{"a":{"model":"x"},"b":["{","}",{"model":"y"}],"c":"\\"model\\":","model":"z"}';
  const spans = topLevelMembers(enc(text), ["model"])!.get("model")!;
  assert.deepEqual(spans.map(([s, e]) => text.slice(s, e)), ['"z"']);
  assert.equal(topLevelMembers(enc('{"model":5'), ["model"]), null);
});
Deno.test("withModel: large bodies keep every other byte (400 KB prompt)", () => {
  const prompt = 'lorem \\"ipsum\\" {dolor} '.repeat(16_000);
  const text =
    `{"messages":[{"role":"user","content":"${prompt}"}],"model":"gpt-4o","stream":true}`;
  const out = dec(body(text).withModel("llama"));
  assert.equal(out, text.replace('"model":"gpt-4o"', '"model":"llama"'));
});

Deno.test("topLevelMembers: a long body (searched a word at a time) reads alike at every alignment", () => {
  // Escaped quotes and backslashes at every position a 4-byte word can put them, the closing
  // quote at every offset from a word's start, the body at every byte offset of its buffer,
  // and lengths around the size where the word search starts.
  const random = seededRandom(42);
  const pieces = ['\\"', "\\\\", '\\\\\\"', "é", "😀", "a", "{[", "\\n"];
  for (let n = 0; n < 400; n++) {
    let prompt = "";
    const size = 900 + Math.floor(random() * 300);
    while (prompt.length < size) {
      prompt += random() < 0.3 ? pieces[Math.floor(random() * pieces.length)] : "x";
    }
    const text = `{"messages":[{"content":"${prompt}"}],"tail":"${"y".repeat(n % 9)}",` +
      `"model":"m-${n}"}`;
    const parsed = JSON.parse(text);
    const bytes = enc(text);
    const offset = n % 4;
    const buffer = new Uint8Array(bytes.byteLength + 8);
    buffer.set(bytes, offset);
    const view = buffer.subarray(offset, offset + bytes.byteLength);
    const spans = topLevelMembers(view, ["model", "messages"])!;
    assert.ok(spans, text);
    const [start, end] = spans.get("model")![0]!;
    assert.equal(JSON.parse(dec(view.subarray(start, end))!), parsed.model);
    const [mStart, mEnd] = spans.get("messages")![0]!;
    assert.deepEqual(JSON.parse(dec(view.subarray(mStart, mEnd))!), parsed.messages);
  }
  // An unterminated long string: no members, never a read past the end.
  assert.equal(topLevelMembers(enc(`{"model":"${"x".repeat(5000)}`), ["model"]), null);
  assert.equal(topLevelMembers(enc(`{"model":"${"x".repeat(5000)}\\"}`), ["model"]), null);
});

Deno.test("parsedModel: only what a parse already found", () => {
  const b = body('{"model":"m"}');
  assert.equal(b.parsedModel(), undefined);
  b.model();
  assert.equal(b.parsedModel(), "m");
});

Deno.test("topLevelMembers: every kind of value; nested and quoted look-alikes skipped", () => {
  const text = '{ "a" : 1.5e3 , "model":{"model":[1,"]"]},"b":[{"model":"x"}],' +
    '"c":"\\"model\\":","mod\\u0065l":null,"d":true,"model" : -2 }';
  const layout = topLevelMembers(enc(text), ["model", "d", "e"])!;
  assert.deepEqual([...layout.keys()], ["model", "d"]);
  const spans = layout.get("model")!;
  assert.deepEqual(spans.map(([s, e]) => text.slice(s, e)), ['{"model":[1,"]"]}', "null", "-2"]);
  assert.equal(topLevelMembers(enc('["model",1]'), ["model"]), null);
  assert.equal(topLevelMembers(enc('{"model"'), ["model"]), null);
  assert.equal(topLevelMembers(enc('{"model":1 x "model":2}'), ["model"]), null);
  assert.deepEqual(topLevelMembers(enc(" {} "), ["model"]), new Map());
});

Deno.test("member: the value JSON.parse gives, for valid bodies", () => {
  const bodies = [
    '{"stream":true,"stream_options":{"include_usage":false}}',
    '  {"messages":[{"role":"user","content":"a\\"b{"}],"stream":false,"n":[1,{"x":[]}]}',
    '{"stream":1,"stream":"last","e":{},"f":[]}',
    '{"str\\u0065am":[true, {"a":"}"}],"x":-0.5E+2}',
    "{}",
    '{"a":{"stream":true}}',
  ];
  for (const text of bodies) {
    for (const name of ["stream", "stream_options", "x", "n"]) {
      const scanned = body(text).member(name);
      const expected = Object.hasOwn(JSON.parse(text), name) ? JSON.parse(text)[name] : ABSENT;
      assert.deepEqual(scanned, expected, `${name} of ${text}`);
    }
  }
});

Deno.test("member: a value that is not standard JSON is UNREADABLE; a non-object body has none", () => {
  assert.equal(body('{"a":NaN,"stream":true}').member("stream"), true);
  assert.equal(body('{"a":NaN,"stream":true}').member("a"), UNREADABLE);
  assert.equal(body('[{"stream":true}]').member("stream"), ABSENT);
  assert.equal(body("stream").member("stream"), ABSENT);
  assert.equal(new RequestBody(null).member("stream"), ABSENT);
});

Deno.test("withMember: values replaced in place, or the member added first", () => {
  assert.equal(
    dec(body('{"a":1, "b" :2,"b":[3]}').withMember("b", "true")),
    '{"a":1, "b" :true,"b":true}',
  );
  assert.equal(dec(body(" { } ").withMember("b", "1")), ' {"b":1 } ');
  assert.equal(dec(body('{"a":1}').withMember("b", "1")), '{"b":1,"a":1}');
  assert.equal(dec(body("[1]").withMember("b", "1")), "[1]");
});

Deno.test("member: agrees with JSON.parse on 500 random documents (seeded)", () => {
  const random = seededRandom(20261202);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const blank = () => pick(["", "", " ", "\n  ", "\t", "\r\n"]);
  const names = ["model", "stream", "stream_options", "messages", "mod\\u0065l", "x"];
  const stringOf = () =>
    '"' + Array.from({ length: Math.floor(random() * 6) }, () =>
      pick(["a", "model", '\\"', "\\\\", "\\n", "\\u0022", "{", "]", ",", ":", "é", "😀", " "]))
      .join("") +
    '"';
  const value = (depth: number): string => {
    const kind = Math.floor(random() * (depth > 2 ? 4 : 6));
    switch (kind) {
      case 0:
        return stringOf();
      case 1:
        return pick(["0", "-1.5e+3", "12", "true", "false", "null"]);
      case 2:
        return pick(['"gpt-4o"', '"m\\u006f"']);
      case 3:
        return "[]";
      case 4:
        return "[" +
          Array.from(
            { length: 1 + Math.floor(random() * 3) },
            () => blank() + value(depth + 1) + blank(),
          ).join(",") + "]";
      default:
        return object(depth + 1);
    }
  };
  const object = (depth: number): string =>
    "{" + blank() + Array.from({ length: Math.floor(random() * 5) }, () =>
      `${
        pick([...names.map((n) => `"${n}"`), stringOf()])
      }${blank()}:${blank()}${value(depth)}`)
      .join(`${blank()},${blank()}`) +
    blank() + "}";
  for (let n = 0; n < 500; n++) {
    const text = blank() + object(0) + blank();
    const parsed = JSON.parse(text);
    for (const name of ["model", "stream", "stream_options", "messages", "x"]) {
      const expected = Object.hasOwn(parsed, name) ? parsed[name] : ABSENT;
      assert.deepEqual(body(text).member(name), expected, `${name} of ${text}`);
    }
  }
});

Deno.test("ambiguousMember: another spelling of model, stream or stream_options (Go folds names)", () => {
  const ambiguous = [
    ['{"model":"a","Model":"b"}', "model"],
    ['{"MODEL":"b","model":"a"}', "model"],
    ['{"Model":"b"}', "model"],
    ['{"model":"a","\\u017ftream":true}', "stream"], // ſ, written escaped
    ['{"stream":false,"STREAM_options":{}}', "stream_options"],
    ['{"Stre\\u0061m":true}', "stream"],
  ] as const;
  for (const [text, name] of ambiguous) assert.equal(body(text).ambiguousMember(), name, text);
  const longS = new Uint8Array([...enc('{"'), 0xc5, 0xbf, ...enc('tream":true}')]); // ſ, raw UTF-8
  assert.equal(new RequestBody(longS).ambiguousMember(), "stream");
  for (
    const text of [
      '{"model":"a","models":"b","mode":1,"stream":true}',
      '{"messages":[{"Model":"x"}],"model":"a"}',
      '{"mod\\u0065l":"a","model":"b"}',
      "not json",
    ]
  ) assert.equal(body(text).ambiguousMember(), undefined, text);
  // The spelling that is not exact is not the member.
  assert.equal(body('{"Model":"b"}').model(), undefined);
});
