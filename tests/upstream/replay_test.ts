import assert from "node:assert/strict";
import { peekBody } from "../../src/upstream/replay.ts";
import { fetchReply } from "../../src/transport/fetch.ts";

const enc = (text: string) => new TextEncoder().encode(text);

function chunked(chunks: string[], fail?: Error) {
  let i = 0;
  return fetchReply(
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (i < chunks.length) controller.enqueue(enc(chunks[i++]!));
          else if (fail) controller.error(fail);
          else controller.close();
        },
      }),
      { status: 400, headers: { "content-type": "application/json" } },
    ),
  );
}

Deno.test("peekBody: a small body is read whole and replayed", async () => {
  const peeked = await peekBody(chunked(['{"error":', '"x"}']), 100);
  assert.equal(new TextDecoder().decode(peeked.whole), '{"error":"x"}');
  assert.equal(await new Response(peeked.reply.body).text(), '{"error":"x"}');
});

Deno.test("peekBody: a long body is not whole; the replay still gives every byte", async () => {
  const parts = ["aaaa", "bbbb", "cccc", "dddd"];
  const peeked = await peekBody(chunked(parts), 6);
  assert.equal(peeked.whole, undefined);
  assert.equal(new TextDecoder().decode(await peeked.reply.bytes()), parts.join(""));
});

Deno.test("peekBody: a body that breaks replays up to the break, then the error", async () => {
  const peeked = await peekBody(chunked(["abc"], new Error("reset")), 100);
  assert.equal(peeked.whole, undefined);
  const reader = peeked.reply.reader()!;
  assert.equal(new TextDecoder().decode((await reader.read()).value), "abc");
  await assert.rejects(reader.read(), /reset/);
});
