/**
 * Looking at the start of an upstream's answer before deciding what to do with it (a 400 that
 * may say the prompt is too long for the model), without losing a byte of it: the bytes read
 * are replayed first, then whatever the body still has.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import type { BodyReader, UpstreamReply } from "../transport/transport.ts";

/** What {@linkcode peekBody} learned, and the reply to use from now on. */
export interface Peeked {
  /** The whole body, when it ended within the limit (else undefined). */
  readonly whole: Uint8Array<ArrayBuffer> | undefined;
  /** Gives the same body as the original reply did, from its first byte. */
  readonly reply: UpstreamReply;
}

/**
 * Reads `reply`'s body until it ends or passes `maxBytes`. A body that breaks is not an error
 * here: the replay ends with that error where the body broke, for whoever reads it.
 */
export async function peekBody(reply: UpstreamReply, maxBytes: number): Promise<Peeked> {
  const reader = reply.reader();
  if (!reader) return { whole: new Uint8Array(0), reply };
  const head: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  let failure: { error: unknown } | undefined;
  try {
    while (size <= maxBytes) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      head.push(value);
      size += value.byteLength;
    }
  } catch (error) {
    failure = { error };
  }
  const whole = ended ? concatBytes(head) : undefined;
  return { whole, reply: replay(reply, whole, head, reader, failure) };
}

function replay(
  reply: UpstreamReply,
  whole: Uint8Array<ArrayBuffer> | undefined,
  head: Uint8Array[],
  rest: BodyReader,
  failure: { error: unknown } | undefined,
): UpstreamReply {
  let next = 0;
  const reader: BodyReader = {
    read() {
      if (next < head.length) return Promise.resolve({ done: false, value: head[next++]! });
      if (failure) return Promise.reject(failure.error);
      if (whole) return Promise.resolve({ done: true, value: undefined });
      return rest.read();
    },
    cancel: (reason) => whole || failure ? Promise.resolve() : rest.cancel(reason),
  };
  return {
    status: reply.status,
    statusText: reply.statusText,
    headers: reply.headers,
    hasBody: reply.hasBody,
    get body() {
      return new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          const { done, value } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
        cancel: (reason) => reader.cancel(reason),
      });
    },
    reader: () => reader,
    async bytes() {
      if (whole) return whole;
      const chunks: Uint8Array[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return concatBytes(chunks);
        chunks.push(value);
      }
    },
  };
}
