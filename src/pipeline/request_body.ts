/**
 * The request body, read once and bounded — by size (413) and by time (408) — so that every
 * attempt, retries included, can replay it.
 *
 * @module
 */
import type { Deadline, Deadlines } from "../deadlines.ts";
import {
  BadRequestError,
  PayloadTooLargeError,
  ProxyError,
  RequestTimeoutError,
} from "./errors.ts";
import { concatBytes } from "../bytes.ts";

/**
 * Reads the request body once, bounded by `limit` bytes and `timeoutMs` (a client too slow to
 * send it gets 408), so retries can replay it. A declared length is read in one go.
 */
export async function readBody(
  request: Request,
  limit: number,
  timeoutMs: number,
  deadlines: Deadlines,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit);
  // A declared length above 0 means a body: it is read without making the stream object that
  // `request.body` builds (a noticeable cost per request).
  const body = declared !== null && Number(declared) > 0 ? undefined : request.body;
  if (body === null) return null;
  let deadline: Deadline | undefined;
  const timeout = new Promise<never>((_, reject) => {
    deadline = deadlines.after(
      timeoutMs,
      () =>
        reject(
          new RequestTimeoutError(`the request body did not arrive within ${timeoutMs}ms`, {
            code: "request_body_timeout",
          }),
        ),
    );
  });
  try {
    const length = declared === null ? 0 : Number(declared);
    const reading = length > LARGE_BODY
      ? readDeclared(request.body!, length)
      : declared !== null || !body
      ? request.bytes()
      : readChunks(body, limit);
    return await Promise.race([reading, timeout]);
  } catch (error) {
    if (error instanceof ProxyError) throw error;
    throw new BadRequestError("the request body could not be read completely", {
      code: "request_body_incomplete",
      cause: error,
    });
  } finally {
    deadline?.cancel();
  }
}

/**
 * From this declared length up, a body is read into one buffer of its size: `request.bytes()`
 * gathers it in a buffer that grows and is copied as it goes (for a 400 KB prompt, about a
 * millisecond of copies and page faults more, measured with perf). Below it, `bytes()` is the
 * cheaper call: no stream object.
 */
const LARGE_BODY = 64 * 1024;

/**
 * Reads a body of declared length into one buffer of that length. Hyper ends the body at its
 * declared length, so it never overflows; a body that ends short is incomplete.
 */
async function readDeclared(
  body: ReadableStream<Uint8Array>,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const whole = new Uint8Array(length);
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.byteLength > length) throw new Error("the body is longer than declared");
    whole.set(value, size);
    size += value.byteLength;
  }
  if (size < length) throw new Error("the body ended before its declared length");
  return whole;
}

/** Reads a body of undeclared length chunk by chunk, stopping as soon as it passes `limit`. */
async function readChunks(
  body: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  return concatBytes(chunks);
}

function tooLarge(limit: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`request body exceeds the limit of ${limit} bytes`, {
    code: "request_too_large",
  });
}
