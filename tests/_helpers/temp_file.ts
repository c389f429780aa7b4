/**
 * A temporary YAML file for one test.
 *
 * @module
 */

/** Writes `text` to a new temporary `.yaml` file, runs `fn` with its path, then removes it. */
export async function withTempFile<T>(
  text: string,
  fn: (path: string) => Promise<T>,
): Promise<T> {
  const path = await Deno.makeTempFile({ prefix: "llmproxy-test-", suffix: ".yaml" });
  try {
    await Deno.writeTextFile(path, text);
    return await fn(path);
  } finally {
    await Deno.remove(path);
  }
}
