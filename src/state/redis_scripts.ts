/**
 * The Lua that checks the limits in Redis: one operation per limit kind, each atomic (Redis runs
 * a script alone). Operations are sent in batches (see `script_batch.ts`): one script run,
 * {@linkcode BATCH}, carries every operation that was waiting, so a request's check is one round
 * trip whoever else is checking. Time inside a batch is Redis's own (`TIME`, read once per
 * batch), so instances whose clocks differ agree on every refill. Buckets are stored as one
 * string `"<tokens> <updated at, ms>"` that expires when the bucket is full again (a full bucket
 * is what a missing key means), so nothing stays in Redis longer than it matters.
 *
 * Numbers go back as strings where they have fractions: Redis turns a Lua number into an integer.
 *
 * @module
 */
import type { ScriptCall } from "./script_batch.ts";

/** An operation: its name in {@linkcode BATCH}'s table, and its Lua function body. */
export interface Script {
  /** Name the batch script dispatches on (also the test fakes' key). */
  readonly name: string;
  /** Body of `function(K, A, now)`: K its keys, A its arguments, now Redis's time (ms). */
  readonly lua: string;
}

/** Lua shared by the operations: a bucket's refill, and storing it with its expiry. */
const PRELUDE = `
-- Level of a bucket whose stored value is v (false: none, i.e. full), refilled to now: level,
-- time it is valid at.
local function level_of(v, now, per_ms, full)
  if not v then return full, now end
  local sep = string.find(v, ' ', 1, true)
  local l = tonumber(string.sub(v, 1, sep - 1))
  local at = tonumber(string.sub(v, sep + 1))
  if now <= at then return l, at end
  return math.min(full, l + (now - at) * per_ms), now
end
local function level(key, now, per_ms, full)
  return level_of(redis.call('GET', key), now, per_ms, full)
end
local function store(key, l, at, per_ms, full)
  local ttl = math.ceil((full - l) / per_ms) + 1
  redis.call('SET', key, string.format('%.17g %.17g', l, at), 'PX', ttl)
end
`;

/**
 * A token bucket take (per client IP). K[1] the bucket; A: tokens per ms, burst.
 * Returns `{allowed (0|1), tokens left (string)}`. The same slack as the in-memory bucket.
 */
export const BUCKET_TAKE: Script = {
  name: "bucket_take",
  lua: `
local per_ms, burst = tonumber(A[1]), tonumber(A[2])
local tokens, at = level(K[1], now, per_ms, burst)
local allowed = 0
if tokens + 1e-9 >= 1 then
  tokens = math.max(0, tokens - 1)
  allowed = 1
end
store(K[1], tokens, at, per_ms, burst)
return {allowed, string.format('%.17g', tokens)}
`,
};

/**
 * A client key's admission: budget, then tokens per minute, then a request token (taken only
 * when everything else passes), as `ClientKey.admit` checks them in memory.
 * K: request bucket, token bucket, budget counter. A: request tokens per ms ('' = no limit),
 * request burst, tokens per ms ('' = none), tokens per minute, budget ('' = none).
 * Returns `{code, wait ms, budget used}`: code 0 admitted, 1 budget spent, 2 over its tokens per
 * minute, 3 over its request rate.
 */
export const KEY_ADMIT: Script = {
  name: "key_admit",
  lua: `
-- One read for the three values (each Redis call from Lua costs more than its work).
local v = redis.call('MGET', K[1], K[2], K[3])
local used = 0
if A[5] ~= '' then
  used = tonumber(v[3] or '0')
  if used >= tonumber(A[5]) then return {1, 0, used} end
end
if A[3] ~= '' then
  local per_ms = tonumber(A[3])
  local l = level_of(v[2], now, per_ms, tonumber(A[4]))
  if l <= 0 then return {2, math.floor(-l / per_ms) + 1, used} end
end
if A[1] ~= '' then
  local per_ms, burst = tonumber(A[1]), tonumber(A[2])
  local tokens, at = level_of(v[1], now, per_ms, burst)
  if tokens + 1e-9 < 1 then
    return {3, math.ceil((1 - tokens) / per_ms), used}
  end
  store(K[1], math.max(0, tokens - 1), at, per_ms, burst)
end
return {0, 0, used}
`,
};

/**
 * Charges an answer's tokens: the tokens-per-minute bucket may go into debt (see `TokenRate`);
 * the budget counter of the period grows and expires after the period.
 * K: token bucket, budget counter. A: tokens, tokens per ms ('' = no rate), tokens per minute,
 * budget expiry (epoch ms; '' = no budget). Returns the budget used (0 without one).
 */
export const KEY_CHARGE: Script = {
  name: "key_charge",
  lua: `
local n = tonumber(A[1])
if A[2] ~= '' then
  local per_ms, full = tonumber(A[2]), tonumber(A[3])
  local l, at = level(K[1], now, per_ms, full)
  store(K[1], l - n, at, per_ms, full)
end
local used = 0
if A[4] ~= '' then
  used = redis.call('INCRBY', K[2], n)
  -- A new counter (only this script makes one) gets its expiry; later charges keep it.
  if used == n then redis.call('PEXPIREAT', K[2], A[4]) end
end
return used
`,
};

/**
 * An attempt on an upstream: its 429 cool-down (shared by every instance), then a token of its
 * rate limit. K: the bucket, the cool-down. A: tokens per ms ('' = no limit), burst.
 * Returns `{allowed (0|1), ms until a token, ms of cool-down left}`.
 */
export const UPSTREAM_ACQUIRE: Script = {
  name: "upstream_acquire",
  lua: `
local v = redis.call('MGET', K[1], K[2])
local cool = tonumber(v[2] or '0') or 0
-- A cool-down written by an older version holds '1': its time left is its expiry.
if cool > 0 and cool < 1e12 then cool = redis.call('PTTL', K[2]) else cool = cool - now end
if cool > 0 then return {0, 0, math.ceil(cool)} end
if A[1] ~= '' then
  local per_ms, burst = tonumber(A[1]), tonumber(A[2])
  local tokens, at = level_of(v[1], now, per_ms, burst)
  if tokens + 1e-9 < 1 then return {0, math.ceil((1 - tokens) / per_ms), 0} end
  store(K[1], math.max(0, tokens - 1), at, per_ms, burst)
end
return {1, 0, 0}
`,
};

/**
 * A 429 cool-down of an upstream for every instance: K[1] the cool-down, A[1] its length (ms).
 * Its value is when it ends (Redis's ms), so an acquire reads it with the bucket in one MGET;
 * it expires then. Only ever made longer, never shorter.
 */
export const UPSTREAM_COOL_DOWN: Script = {
  name: "upstream_cool_down",
  lua: `
local ms = tonumber(A[1])
if redis.call('PTTL', K[1]) < ms then
  redis.call('SET', K[1], string.format('%.17g', now + ms), 'PX', ms)
end
return 1
`,
};

/** The cool-downs left (PTTL, ms; ≤ 0: none) of every key given: one call for all upstreams. */
export const COOL_DOWNS_READ: Script = {
  name: "cool_downs_read",
  lua: `
local left = {}
for i, key in ipairs(K) do left[i] = redis.call('PTTL', key) end
return left
`,
};

/** Every operation {@linkcode BATCH} knows. */
export const SCRIPTS: readonly Script[] = [
  BUCKET_TAKE,
  KEY_ADMIT,
  KEY_CHARGE,
  UPSTREAM_ACQUIRE,
  UPSTREAM_COOL_DOWN,
  COOL_DOWNS_READ,
];

/**
 * The one script sent: runs a batch of operations in order, atomically as a whole.
 * KEYS: every key the operations use, each once. ARGV[1]: the operations as one JSON array of
 * fields, per operation its name, its number of keys, its number of arguments, the positions
 * of its keys in KEYS, then its arguments (numbers, or '' for none). One string instead of a few
 * arguments per operation: the client's cost grows with their number (ioredis on Deno, four
 * requests' checks, `bench/redis_batch.ts`: 133 arguments cost 100–130 µs of CPU per round
 * trip, these 9 70–85 µs), and Redis decodes the array in C (`cjson`) in no measurably longer.
 * Returns one answer per operation, in order; an operation that raised an error (a value in
 * Redis it cannot read, say) answers nil (false in Lua), and only that operation counts as
 * failed.
 */
export const BATCH = {
  name: "llmproxyBatch",
  lua: `${PRELUDE}
local OPS = {}
${SCRIPTS.map((s) => `OPS['${s.name}'] = function(K, A, now)${s.lua}end`).join("\n")}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local f = cjson.decode(ARGV[1])
local out, n, a = {}, 0, 1
while a <= #f do
  local op, nk, na = OPS[f[a]], tonumber(f[a + 1]), tonumber(f[a + 2])
  local K, A = {}, {}
  for i = 1, nk do K[i] = KEYS[tonumber(f[a + 2 + i])] end
  for i = 1, na do A[i] = f[a + 2 + nk + i] end
  a, n = a + 3 + nk + na, n + 1
  local ok, answer = pcall(op, K, A, now)
  if ok then out[n] = answer else out[n] = false end
end
return out
`,
} as const;

/**
 * The batch script's arguments: the number of keys, each key once, then the operations as one
 * JSON array (see {@linkcode BATCH}).
 */
export function batchArguments(calls: readonly ScriptCall[]): string[] {
  const positions = new Map<string, number>();
  const fields: (string | number)[] = [];
  for (const call of calls) {
    fields.push(call.script.name, call.keys.length, call.args.length);
    for (const key of call.keys) {
      let position = positions.get(key);
      if (position === undefined) positions.set(key, position = positions.size + 1);
      fields.push(position);
    }
    for (const arg of call.args) fields.push(arg);
  }
  return [String(positions.size), ...positions.keys(), JSON.stringify(fields)];
}
