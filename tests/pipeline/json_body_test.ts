import assert from "node:assert/strict";
import { RequestBody, topLevelStringMembers } from "../../src/pipeline/json_body.ts";

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

Deno.test("RequestBody: parsed once, whatever asks", () => {
  const original = JSON.parse;
  let parses = 0;
  JSON.parse = (...args: Parameters<typeof JSON.parse>) => {
    parses++;
    return original(...args);
  };
  try {
    const b = body('{"model":"m","stream":true}');
    b.model();
    b.json();
    b.model();
    b.withModel("other");
    assert.equal(parses, 1);
    const upload = body("--boundary\r\n");
    upload.model();
    assert.equal(parses, 1, "a body that does not start with { is not parsed");
  } finally {
    JSON.parse = original;
  }
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

Deno.test("topLevelStringMembers: nested objects, arrays and strings with braces are skipped", () => {
  const text = '{"a":{"model":"x"},"b":["{","}",{"model":"y"}],"c":"\\"model\\":","model":"z"}';
  const spans = topLevelStringMembers(enc(text), "model");
  assert.deepEqual(spans.map(([s, e]) => text.slice(s, e)), ['"z"']);
  assert.deepEqual(topLevelStringMembers(enc('{"model":5}'), "model"), []);
});

Deno.test("withModel: large bodies keep every other byte (400 KB prompt)", () => {
  const prompt = 'lorem \\"ipsum\\" {dolor} '.repeat(16_000);
  const text =
    `{"messages":[{"role":"user","content":"${prompt}"}],"model":"gpt-4o","stream":true}`;
  const out = dec(body(text).withModel("llama"));
  assert.equal(out, text.replace('"model":"gpt-4o"', '"model":"llama"'));
});

Deno.test("parsedModel: only what a parse already found", () => {
  const b = body('{"model":"m"}');
  assert.equal(b.parsedModel(), undefined);
  b.model();
  assert.equal(b.parsedModel(), "m");
});
