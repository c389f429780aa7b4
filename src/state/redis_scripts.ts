/**
 * The Lua scripts that check the limits in Redis: one script per limit kind, each one round trip
 * and atomic (Redis runs a script alone). Time inside a script is Redis's own (`TIME`), so
 * instances whose clocks differ agree on every refill. Buckets are stored as one string
 * `"<tokens> <updated at, ms>"` that expires when the bucket is full again (a full bucket is what
 * a missing key means), so nothing stays in Redis longer than it matters.
 *
 * Numbers go back as strings where they have fractions: Redis turns a Lua number into an integer.
 *
 * @module
 */

/** A script and the number of its arguments that are keys. */
export interface Script {
  /** Command name it is defined under (ioredis `defineCommand`). */
  readonly name: string;
  readonly keys: number;
  readonly lua: string;
}

/** Lua shared by the scripts: Redis's time in ms, and a bucket's refill. */
const PRELUDE = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
-- Level of a bucket stored at key, refilled to now: level, time it is valid at.
local function level(key, now, per_ms, full)
  local v = redis.call('GET', key)
  if not v then return full, now end
  local sep = string.find(v, ' ', 1, true)
  local l = tonumber(string.sub(v, 1, sep - 1))
  local at = tonumber(string.sub(v, sep + 1))
  if now <= at then return l, at end
  return math.min(full, l + (now - at) * per_ms), now
end
local function store(key, l, at, per_ms, full)
  local ttl = math.ceil((full - l) / per_ms) + 1
  redis.call('SET', key, string.format('%.17g %.17g', l, at), 'PX', ttl)
end
`;

/**
 * A token bucket take (per client IP). KEYS[1] the bucket; ARGV: tokens per ms, burst.
 * Returns `{allowed (0|1), tokens left (string)}`. The same slack as the in-memory bucket.
 */
export const BUCKET_TAKE: Script = {
  name: "llmproxyBucketTake",
  keys: 1,
  lua: `${PRELUDE}
local per_ms, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, at = level(KEYS[1], now_ms(), per_ms, burst)
local allowed = 0
if tokens + 1e-9 >= 1 then
  tokens = math.max(0, tokens - 1)
  allowed = 1
end
store(KEYS[1], tokens, at, per_ms, burst)
return {allowed, string.format('%.17g', tokens)}
`,
};

/**
 * A client key's admission: budget, then tokens per minute, then a request token (taken only
 * when everything else passes), as `ClientKey.admit` checks them in memory.
 * KEYS: request bucket, token bucket, budget counter. ARGV: request tokens per ms ('' = no
 * limit), request burst, tokens per ms ('' = none), tokens per minute, budget ('' = none).
 * Returns `{code, wait ms, budget used}`: code 0 admitted, 1 budget spent, 2 over its tokens per
 * minute, 3 over its request rate.
 */
export const KEY_ADMIT: Script = {
  name: "llmproxyKeyAdmit",
  keys: 3,
  lua: `${PRELUDE}
local now = now_ms()
local used = 0
if ARGV[5] ~= '' then
  used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= tonumber(ARGV[5]) then return {1, 0, used} end
end
if ARGV[3] ~= '' then
  local per_ms = tonumber(ARGV[3])
  local l = level(KEYS[2], now, per_ms, tonumber(ARGV[4]))
  if l <= 0 then return {2, math.floor(-l / per_ms) + 1, used} end
end
if ARGV[1] ~= '' then
  local per_ms, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
  local tokens, at = level(KEYS[1], now, per_ms, burst)
  if tokens + 1e-9 < 1 then
    return {3, math.ceil((1 - tokens) / per_ms), used}
  end
  store(KEYS[1], math.max(0, tokens - 1), at, per_ms, burst)
end
return {0, 0, used}
`,
};

/**
 * Charges an answer's tokens: the tokens-per-minute bucket may go into debt (see `TokenRate`);
 * the budget counter of the period grows and expires after the period.
 * KEYS: token bucket, budget counter. ARGV: tokens, tokens per ms ('' = no rate), tokens per
 * minute, budget expiry (epoch ms; '' = no budget). Returns the budget used (0 without one).
 */
export const KEY_CHARGE: Script = {
  name: "llmproxyKeyCharge",
  keys: 2,
  lua: `${PRELUDE}
local n = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  local per_ms, full = tonumber(ARGV[2]), tonumber(ARGV[3])
  local l, at = level(KEYS[1], now_ms(), per_ms, full)
  store(KEYS[1], l - n, at, per_ms, full)
end
local used = 0
if ARGV[4] ~= '' then
  used = redis.call('INCRBY', KEYS[2], n)
  redis.call('PEXPIREAT', KEYS[2], ARGV[4])
end
return used
`,
};

/**
 * An attempt on an upstream: its 429 cool-down (shared by every instance), then a token of its
 * rate limit. KEYS: the bucket, the cool-down. ARGV: tokens per ms ('' = no limit), burst.
 * Returns `{allowed (0|1), ms until a token, ms of cool-down left}`.
 */
export const UPSTREAM_ACQUIRE: Script = {
  name: "llmproxyUpstreamAcquire",
  keys: 2,
  lua: `${PRELUDE}
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return {0, 0, cool} end
if ARGV[1] ~= '' then
  local per_ms, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
  local tokens, at = level(KEYS[1], now_ms(), per_ms, burst)
  if tokens + 1e-9 < 1 then return {0, math.ceil((1 - tokens) / per_ms), 0} end
  store(KEYS[1], math.max(0, tokens - 1), at, per_ms, burst)
end
return {1, 0, 0}
`,
};

/**
 * A 429 cool-down of an upstream for every instance: KEYS[1] the cool-down, ARGV[1] its length
 * (ms). Only ever made longer, never shorter.
 */
export const UPSTREAM_COOL_DOWN: Script = {
  name: "llmproxyUpstreamCoolDown",
  keys: 1,
  lua: `
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 1
`,
};

/** The cool-downs left (PTTL, ms; ≤ 0: none) of every key given: one call for all upstreams. */
export const COOL_DOWNS_READ: Script = {
  name: "llmproxyCoolDownsRead",
  keys: 0,
  lua: `
local left = {}
for i, key in ipairs(ARGV) do left[i] = redis.call('PTTL', key) end
return left
`,
};

/** Every script, defined on the client at connect. */
export const SCRIPTS: readonly Script[] = [
  BUCKET_TAKE,
  KEY_ADMIT,
  KEY_CHARGE,
  UPSTREAM_ACQUIRE,
  UPSTREAM_COOL_DOWN,
  COOL_DOWNS_READ,
];
