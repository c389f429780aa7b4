/**
 * A strict parser for the Prometheus text exposition format 0.0.4, for tests.
 *
 * Stricter than Prometheus itself where our renderer has no reason to be loose: only
 * `+Inf`, `-Inf` and `NaN` as special values, no `__`-prefixed label names, all lines of
 * a family contiguous, and every histogram series internally consistent.
 *
 * @module
 */

/** One sample line. */
export interface PromSample {
  /** Sample name, e.g. `foo_bucket` for histogram family `foo`. */
  name: string;
  /** Unescaped label values by name. */
  labels: Record<string, string>;
  /** Parsed value. */
  value: number;
}

/** One metric family: its metadata and samples in order of appearance. */
export interface PromFamily {
  /** Unescaped `# HELP` text. */
  help?: string;
  /** `# TYPE` value. */
  type?: string;
  /** Samples of the family. */
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const TIMESTAMP = /^-?\d+$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/**
 * Parses Prometheus text format into families keyed by family name.
 *
 * @throws {Error} with the 1-based line number on: duplicate `HELP` or `TYPE` for a
 *   family, `TYPE` after samples of its family, lines of a family that are not
 *   contiguous, invalid metric or label names, duplicate label names, bad escapes in
 *   label values or help, unparseable values or timestamps, duplicate series, and
 *   histogram series whose buckets are not cumulative, not increasing in `le`, lack
 *   `+Inf`, or whose `_count` differs from the `+Inf` bucket or is missing.
 */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const closed = new Set<string>();
  const seriesSeen = new Set<string>();
  let current: string | undefined;

  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((line, index) => {
    const fail = (why: string): never => {
      throw new Error(`line ${index + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    const enter = (name: string): PromFamily => {
      if (name !== current) {
        if (closed.has(name)) fail(`lines of family "${name}" are not contiguous`);
        if (current !== undefined) closed.add(current);
        current = name;
      }
      let family = families.get(name);
      if (family === undefined) {
        family = { samples: [] };
        families.set(name, family);
      }
      return family;
    };

    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const meta = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t](.*))?$/.exec(line);
      if (meta === null) return; // plain comment
      const [, keyword, name = "", rest = ""] = meta;
      if (!isWhole(METRIC_NAME, name)) fail(`invalid metric name "${name}"`);
      const family = enter(name);
      if (keyword === "HELP") {
        if (family.help !== undefined) fail(`duplicate HELP for "${name}"`);
        family.help = unescape(rest, false, fail);
      } else {
        if (family.type !== undefined) fail(`duplicate TYPE for "${name}"`);
        if (family.samples.length > 0) fail(`TYPE for "${name}" after its samples`);
        const type = rest.trim();
        if (!TYPES.has(type)) fail(`unknown type "${type}"`);
        family.type = type;
      }
      return;
    }

    const sample = parseSampleLine(line, fail);
    const familyName = familyOf(sample.name, families);
    const family = enter(familyName);
    checkSampleName(familyName, family.type, sample, fail);
    const key = seriesKey(sample.name, sample.labels);
    if (seriesSeen.has(key)) fail(`duplicate series ${key}`);
    seriesSeen.add(key);
    family.samples.push(sample);
  });

  for (const [name, family] of families) {
    if (family.type === "histogram") checkHistogram(name, family.samples);
  }
  return families;
}

/**
 * Returns the value of the sample with exactly this name and label set, or `undefined`.
 *
 * @param labels All labels of the series (`le` included for buckets); @default {}
 */
export function sampleValue(
  parsed: Map<string, PromFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const key = seriesKey(name, labels);
  for (const family of parsed.values()) {
    for (const s of family.samples) {
      if (s.name === name && seriesKey(s.name, s.labels) === key) return s.value;
    }
  }
  return undefined;
}

function parseSampleLine(line: string, fail: (why: string) => never): PromSample {
  let pos = 0;
  const skipBlanks = () => {
    while (line[pos] === " " || line[pos] === "\t") pos++;
  };
  const nameMatch = METRIC_NAME.exec(line);
  if (nameMatch === null) return fail("invalid metric name");
  const name = nameMatch[0];
  pos = name.length;
  skipBlanks();

  const labels: Record<string, string> = {};
  if (line[pos] === "{") {
    pos++;
    for (;;) {
      skipBlanks();
      if (line[pos] === "}") break;
      const labelMatch = LABEL_NAME.exec(line.slice(pos));
      if (labelMatch === null) return fail(`invalid label name at column ${pos + 1}`);
      const label = labelMatch[0];
      if (label.startsWith("__")) fail(`reserved label name "${label}"`);
      if (Object.hasOwn(labels, label)) fail(`duplicate label "${label}"`);
      pos += label.length;
      skipBlanks();
      if (line[pos] !== "=") fail(`expected "=" after label "${label}"`);
      pos++;
      skipBlanks();
      if (line[pos] !== '"') fail(`expected '"' to open value of label "${label}"`);
      pos++;
      let raw = "";
      for (;;) {
        const c = line[pos];
        if (c === undefined) return fail(`unterminated value of label "${label}"`);
        if (c === '"') break;
        if (c === "\\") {
          raw += c + (line[pos + 1] ?? "");
          pos += 2;
        } else {
          raw += c;
          pos++;
        }
      }
      pos++; // closing quote
      labels[label] = unescape(raw, true, fail);
      skipBlanks();
      if (line[pos] === ",") {
        pos++;
        continue;
      }
      if (line[pos] !== "}") fail(`expected "," or "}" after value of label "${label}"`);
    }
    pos++; // closing brace
  } else if (pos === name.length) {
    // No blank after the name: something like `foo-bar 1` or `foo`.
    fail("invalid metric name or missing value");
  }

  const fields = line.slice(pos).trim().split(/[ \t]+/);
  if (fields.length === 0 || fields[0] === "" || fields.length > 2) {
    fail("expected a value and an optional timestamp");
  }
  const value = parseValue(fields[0]!);
  if (value === undefined) fail(`unparseable value "${fields[0]}"`);
  if (fields[1] !== undefined && !TIMESTAMP.test(fields[1])) {
    fail(`unparseable timestamp "${fields[1]}"`);
  }
  return { name, labels, value: value! };
}

function parseValue(s: string): number | undefined {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  return FLOAT.test(s) ? Number(s) : undefined;
}

/** Resolves `x_bucket`/`x_sum`/`x_count` to a declared histogram or summary `x`. */
function familyOf(sampleName: string, families: Map<string, PromFamily>): string {
  const m = /^(.*)_(bucket|sum|count)$/.exec(sampleName);
  if (m !== null) {
    const base = m[1]!;
    const type = families.get(base)?.type;
    if (type === "histogram" || (type === "summary" && m[2] !== "bucket")) return base;
  }
  return sampleName;
}

function checkSampleName(
  family: string,
  type: string | undefined,
  sample: PromSample,
  fail: (why: string) => never,
): void {
  if (type === "histogram") {
    if (sample.name === family) fail(`histogram "${family}" sample without suffix`);
    if (sample.name === `${family}_bucket` && !Object.hasOwn(sample.labels, "le")) {
      fail(`bucket of "${family}" without le label`);
    }
  } else if (type === "summary" && sample.name === family) {
    if (!Object.hasOwn(sample.labels, "quantile")) fail(`summary "${family}" without quantile`);
  }
}

function checkHistogram(family: string, samples: readonly PromSample[]): void {
  interface Group {
    buckets: { le: number; value: number }[];
    sum?: number;
    count?: number;
  }
  const groups = new Map<string, Group>();
  for (const s of samples) {
    const { le, ...rest } = s.labels;
    const key = seriesKey("", rest);
    let group = groups.get(key);
    if (group === undefined) {
      group = { buckets: [] };
      groups.set(key, group);
    }
    if (s.name === `${family}_bucket`) {
      const bound = le === undefined ? undefined : parseValue(le);
      if (bound === undefined || Number.isNaN(bound)) {
        throw new Error(`histogram "${family}" ${key}: bad le "${le}"`);
      }
      group.buckets.push({ le: bound, value: s.value });
    } else if (s.name === `${family}_sum`) {
      group.sum = s.value;
    } else {
      group.count = s.value;
    }
  }
  for (const [key, group] of groups) {
    const where = `histogram "${family}" ${key}`;
    for (let i = 1; i < group.buckets.length; i++) {
      const prev = group.buckets[i - 1]!;
      const cur = group.buckets[i]!;
      if (!(cur.le > prev.le)) throw new Error(`${where}: le ${cur.le} after ${prev.le}`);
      if (!(cur.value >= prev.value)) {
        throw new Error(`${where}: bucket le=${cur.le} (${cur.value}) below previous`);
      }
    }
    const last = group.buckets.at(-1);
    if (last === undefined || last.le !== Infinity) throw new Error(`${where}: no +Inf bucket`);
    if (group.sum === undefined) throw new Error(`${where}: no _sum`);
    if (group.count === undefined) throw new Error(`${where}: no _count`);
    if (group.count !== last.value) {
      throw new Error(`${where}: _count ${group.count} != +Inf bucket ${last.value}`);
    }
  }
}

/** Undoes label-value (`\\`, `\"`, `\n`) or help (`\\`, `\n`) escaping; throws on others. */
function unescape(raw: string, isLabel: boolean, fail: (why: string) => never): string {
  if (!raw.includes("\\")) return raw;
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const next = raw[++i];
    if (next === "\\") out += "\\";
    else if (next === "n") out += "\n";
    else if (next === '"' && isLabel) out += '"';
    else fail(`bad escape "\\${next ?? ""}"`);
  }
  return out;
}

function isWhole(re: RegExp, s: string): boolean {
  return re.exec(s)?.[0] === s;
}

function seriesKey(name: string, labels: Record<string, string>): string {
  const pairs = Object.keys(labels).sort().map((k) => [k, labels[k]]);
  return `${name}${JSON.stringify(pairs)}`;
}
