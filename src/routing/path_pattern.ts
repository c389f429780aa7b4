/**
 * Path patterns for a forward's `routing` rules.
 *
 * A pattern matches the whole path, segment by segment:
 * - `chat` — a static segment, matched exactly;
 * - `:name` — any one non-empty segment;
 * - `{name:regex}` — one segment that the regex matches entirely;
 * - `*` — any one segment; as the last segment, the rest of the path (zero or more segments).
 *
 * Rules are ordered once, at load, from most to least specific — segment by segment,
 * static > regex param > param > wildcard > rest (a pattern that ends ranks just above rest),
 * then declared order —
 * so matching a request is a walk that stops at the first hit.
 *
 * @module
 */

/** Segment kinds, ranked: a higher rank is more specific. */
const enum Rank {
  Rest = 0,
  Wildcard = 1,
  Param = 2,
  RegexParam = 3,
  Static = 4,
}

type Segment =
  | { readonly rank: Rank.Static; readonly text: string }
  | { readonly rank: Rank.RegexParam; readonly regex: RegExp }
  | { readonly rank: Rank.Param | Rank.Wildcard | Rank.Rest };

/** A parsed pattern. */
export interface PathPattern {
  readonly source: string;
  readonly segments: readonly Segment[];
  /** The pattern with parameter names erased: two patterns with the same key are duplicates. */
  readonly key: string;
}

/** Thrown for a pattern that cannot be parsed; the message says what is wrong. */
export class PatternError extends Error {
  override name = "PatternError";
}

const PARAM_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses a pattern such as `/v1/{model:[a-z0-9-]+}/chat/*`. Throws {@linkcode PatternError}. */
export function parsePathPattern(source: string): PathPattern {
  if (!source.startsWith("/")) throw new PatternError(`pattern must start with "/"`);
  const parts = source.slice(1).split("/");
  const segments: Segment[] = [];
  const keyParts: string[] = [];
  parts.forEach((part, i) => {
    const last = i === parts.length - 1;
    if (part === "*") {
      segments.push({ rank: last ? Rank.Rest : Rank.Wildcard });
      keyParts.push(last ? "**" : "*");
    } else if (part.startsWith(":")) {
      const name = part.slice(1);
      if (!PARAM_NAME_RE.test(name)) throw new PatternError(`invalid parameter name "${part}"`);
      segments.push({ rank: Rank.Param });
      keyParts.push(":");
    } else if (part.startsWith("{")) {
      segments.push(parseRegexSegment(part));
      keyParts.push(`{${part.slice(part.indexOf(":") + 1, -1)}}`);
    } else {
      if (/[{}*]/.test(part) || (part === "" && !last)) {
        throw new PatternError(`invalid segment "${part}"`);
      }
      segments.push({ rank: Rank.Static, text: part });
      keyParts.push(part);
    }
  });
  return { source, segments, key: "/" + keyParts.join("/") };
}

function parseRegexSegment(part: string): Segment {
  const colon = part.indexOf(":");
  if (!part.endsWith("}") || colon < 0) {
    throw new PatternError(`invalid segment "${part}": expected {name:regex}`);
  }
  const name = part.slice(1, colon);
  if (!PARAM_NAME_RE.test(name)) throw new PatternError(`invalid parameter name in "${part}"`);
  const body = part.slice(colon + 1, -1);
  if (body === "") throw new PatternError(`empty regex in "${part}"`);
  try {
    return { rank: Rank.RegexParam, regex: new RegExp(`^(?:${body})$`) };
  } catch (error) {
    throw new PatternError(`invalid regex in "${part}": ${(error as Error).message}`);
  }
}

/** Whether `pattern` matches `path` (a URL pathname starting with "/"). */
export function matchPath(pattern: PathPattern, path: string): boolean {
  const parts = path.slice(1).split("/");
  const { segments } = pattern;
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.rank === Rank.Rest) return true;
    const part = parts[i];
    if (part === undefined) return false;
    switch (segment.rank) {
      case Rank.Static:
        if (part !== segment.text) return false;
        break;
      case Rank.RegexParam:
        if (!segment.regex.test(part)) return false;
        break;
      default:
        if (part === "") return false;
    }
  }
  return parts.length === segments.length;
}

/**
 * Orders patterns from most to least specific (see the module doc). Stable, so equally
 * specific patterns keep their declared order.
 */
export function compareSpecificity(a: PathPattern, b: PathPattern): number {
  const n = Math.max(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const diff = rankAt(b, i) - rankAt(a, i);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** A pattern that has ended ranks between a rest wildcard and a one-segment wildcard: `/v1` beats `/v1/*` on `/v1`. */
function rankAt(pattern: PathPattern, i: number): number {
  const segment = pattern.segments[i];
  return segment === undefined ? Rank.Rest + 0.5 : segment.rank;
}
