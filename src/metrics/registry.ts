/**
 * A small, dependency-free Prometheus metrics registry rendering the text exposition
 * format 0.0.4.
 *
 * The hot path is a cached child: resolve `family.labels(...)` once where the label
 * values are known, keep the child, and `child.inc()` is then a private-field increment.
 * Where the values are known only per request, `labels(...)` itself is the cache: one map
 * lookup per label, no key built.
 *
 * @module
 */

/** `Content-Type` of {@linkcode Registry.render} output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Label values for a tuple of label names: one string per name, same order. */
export type LabelValues<L extends readonly string[]> = { -readonly [K in keyof L]: string };

/** The metric types this registry produces, as written in `# TYPE` lines. */
export type MetricType = "counter" | "gauge" | "histogram";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A monotonically increasing value; one labelled series of a {@linkcode Counter}. */
export class CounterChild {
  #value = 0;

  /**
   * Adds `n` to the counter.
   *
   * @param n Amount to add; must be non-negative (a counter never goes down).
   * @throws {RangeError} when `n` is negative or NaN.
   */
  inc(n = 1): void {
    // `!(n >= 0)` also rejects NaN, which would poison the counter forever.
    if (!(n >= 0)) throw new RangeError(`Cannot increment counter by ${n}: must be >= 0`);
    this.#value += n;
  }

  /** Current value. */
  get value(): number {
    return this.#value;
  }
}

/** A value that can go up and down; one labelled series of a {@linkcode Gauge}. */
export class GaugeChild {
  #value = 0;

  /** Sets the gauge to `v`. */
  set(v: number): void {
    this.#value = v;
  }

  /** Adds `v` (may be negative) to the gauge. */
  add(v: number): void {
    this.#value += v;
  }

  /** Adds `n` to the gauge. @param n Amount, @default 1 */
  inc(n = 1): void {
    this.#value += n;
  }

  /** Subtracts `n` from the gauge. @param n Amount, @default 1 */
  dec(n = 1): void {
    this.#value -= n;
  }

  /** Current value. */
  get value(): number {
    return this.#value;
  }
}

/** A distribution of observations; one labelled series of a {@linkcode Histogram}. */
export class HistogramChild {
  readonly #bounds: readonly number[];
  /** Non-cumulative count per bucket; the last slot is the implicit `+Inf` bucket. */
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  /** Use {@linkcode Histogram.labels} instead; `bounds` are validated there. */
  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    // A plain packed array: measured faster than a Float64Array for the `+= 1` below.
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
  }

  /** Records one observation of `v` (e.g. seconds). NaN lands in `+Inf` only. */
  observe(v: number): void {
    // Linear scan: bucket lists are short (~15) and the scan stops at the first upper
    // bound >= v, which beats a binary search at this size. `!(v <= b)` sends NaN to +Inf.
    const bounds = this.#bounds;
    const n = bounds.length;
    let i = 0;
    while (i < n && !(v <= bounds[i]!)) i++;
    this.#counts[i]! += 1;
    this.#sum += v;
    this.#count += 1;
  }

  /** Number of observations. */
  get count(): number {
    return this.#count;
  }

  /** Sum of all observed values. */
  get sum(): number {
    return this.#sum;
  }

  /** Cumulative counts per upper bound, ending with the `+Inf` bucket (== `count`). */
  cumulativeCounts(): number[] {
    const out = new Array<number>(this.#counts.length);
    let acc = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      acc += this.#counts[i]!;
      out[i] = acc;
    }
    return out;
  }
}

/** A child with its label values and pre-rendered, escaped label pairs (`a="x",b="y"`). */
interface Series<C> {
  readonly child: C;
  readonly values: readonly string[];
  readonly labelText: string;
}

/**
 * Children keyed by label values, one map level per label: the first value selects a map of
 * the second, and so on; the last level holds the series. A lookup builds no key.
 */
type Level = Map<string, unknown>;

/**
 * State shared by all metric families: name, help, label names and the children keyed
 * by their label values. Create families through {@linkcode Registry}.
 */
abstract class Family<L extends readonly string[], C> {
  /** Metric family name, as in `# TYPE <name> ...`. */
  readonly name: string;
  /** Unescaped help text. */
  readonly help: string;
  /** Label names, in the order `labels()` takes values. */
  readonly labelNames: L;
  /** Type written in the `# TYPE` line. */
  abstract readonly type: MetricType;
  /** Series by label values (see {@linkcode Level}); an unlabelled family keys its one by "". */
  readonly #root: Level = new Map();
  /** Every series in creation order, for rendering. */
  readonly #series = new Set<Series<C>>();
  readonly #createChild: () => C;

  constructor(name: string, help: string, labelNames: L, createChild: () => C) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.#createChild = createChild;
    // An unlabelled metric has exactly one series: expose it as 0 from the start.
    if (labelNames.length === 0) this.labels(...([] as unknown as LabelValues<L>));
  }

  /**
   * Returns the child for these label values, creating it on first use. The same object
   * is returned on every call, so callers may keep it and skip this lookup entirely.
   *
   * This is the per-request path: the lookup walks one map per label, building no key, so
   * label sets known only at request time (group, upstream, status) need no cache outside.
   *
   * @throws {RangeError} when the number of values differs from the label names.
   */
  labels(...values: LabelValues<L>): C {
    const last = values.length - 1;
    if (last !== this.labelNames.length - 1) throw this.#arityError(values.length);
    let level = this.#root;
    for (let i = 0; i < last; i++) {
      const next = level.get(values[i]!) as Level | undefined;
      if (next === undefined) return this.#create(values);
      level = next;
    }
    const found = level.get(last < 0 ? "" : values[last]!) as Series<C> | undefined;
    return found === undefined ? this.#create(values) : found.child;
  }

  /**
   * Removes the child for these label values (e.g. an upstream dropped on reload).
   * A caller still holding the child may update it, but it is no longer rendered.
   *
   * @returns whether a child existed.
   * @throws {RangeError} when the number of values differs from the label names.
   */
  remove(...values: LabelValues<L>): boolean {
    if (values.length !== this.labelNames.length) throw this.#arityError(values.length);
    const series = this.#find(values);
    if (series) this.#delete(series);
    return series !== undefined;
  }

  /**
   * Removes every child whose label `label` has the value `value` (e.g. every series of an
   * upstream a reload removed, whatever its other labels). Detached as with `remove()`.
   *
   * @returns how many children were removed.
   * @throws {RangeError} when `label` is not one of this family's label names.
   */
  removeWhere(label: L[number], value: string): number {
    const index = this.labelNames.indexOf(label);
    if (index < 0) {
      throw new RangeError(`Metric "${this.name}" has no label "${label}"`);
    }
    let removed = 0;
    for (const series of this.#series) {
      if (series.values[index] !== value) continue;
      this.#delete(series);
      removed++;
    }
    return removed;
  }

  /**
   * Removes every child. Children held by callers become detached, as with `remove()`;
   * an unlabelled metric gets a fresh zero-valued child.
   */
  reset(): void {
    this.#root.clear();
    this.#series.clear();
    if (this.labelNames.length === 0) this.labels(...([] as unknown as LabelValues<L>));
  }

  /** Number of children currently rendered. */
  get size(): number {
    return this.#series.size;
  }

  /** Appends this family's lines, without trailing newlines, to `out`. */
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`);
    for (const series of this.#series) {
      this.renderSeries(out, series.child, series.labelText);
    }
  }

  /** Appends the sample lines of one child. */
  protected abstract renderSeries(out: string[], child: C, labelText: string): void;

  /** Creates the series for `values` (not present yet) with the levels it needs. */
  #create(values: readonly string[]): C {
    const series: Series<C> = {
      child: this.#createChild(),
      values,
      labelText: this.#labelText(values),
    };
    const last = values.length - 1;
    let level = this.#root;
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]!) as Level | undefined;
      if (next === undefined) level.set(values[i]!, next = new Map());
      level = next;
    }
    level.set(last < 0 ? "" : values[last]!, series);
    this.#series.add(series);
    return series.child;
  }

  #find(values: readonly string[]): Series<C> | undefined {
    const last = values.length - 1;
    let level: Level | undefined = this.#root;
    for (let i = 0; i < last && level; i++) level = level.get(values[i]!) as Level | undefined;
    return level?.get(last < 0 ? "" : values[last]!) as Series<C> | undefined;
  }

  /** Unlinks `series` and prunes the levels it leaves empty, so removed names free memory. */
  #delete(series: Series<C>): void {
    this.#series.delete(series);
    const { values } = series;
    const last = values.length - 1;
    const path: Level[] = [this.#root];
    for (let i = 0; i < last; i++) path.push(path[i]!.get(values[i]!) as Level);
    path[last < 0 ? 0 : last]!.delete(last < 0 ? "" : values[last]!);
    for (let i = last - 1; i >= 0 && path[i + 1]!.size === 0; i--) path[i]!.delete(values[i]!);
  }

  #labelText(values: readonly string[]): string {
    let text = "";
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      if (typeof value !== "string") {
        throw new TypeError(
          `Cannot create series of metric "${this.name}": value of label "${
            this.labelNames[i]
          }" is ${typeof value}, not string`,
        );
      }
      text += `${i === 0 ? "" : ","}${this.labelNames[i]}="${escapeLabelValue(value)}"`;
    }
    return text;
  }

  #arityError(got: number): RangeError {
    const names = this.labelNames.join(", ");
    return new RangeError(
      `Metric "${this.name}" expects ${this.labelNames.length} label value(s) (${names}), got ${got}`,
    );
  }
}

/** A counter family; see {@linkcode CounterChild}. */
export class Counter<L extends readonly string[] = readonly string[]>
  extends Family<L, CounterChild> {
  /** Always `"counter"`. */
  readonly type = "counter";

  /** Use {@linkcode Registry.counter} instead. */
  constructor(name: string, help: string, labelNames: L) {
    super(name, help, labelNames, () => new CounterChild());
  }

  protected renderSeries(out: string[], child: CounterChild, labelText: string): void {
    out.push(sampleLine(this.name, labelText, child.value));
  }
}

/** A gauge family; see {@linkcode GaugeChild}. */
export class Gauge<L extends readonly string[] = readonly string[]> extends Family<L, GaugeChild> {
  /** Always `"gauge"`. */
  readonly type = "gauge";

  /** Use {@linkcode Registry.gauge} instead. */
  constructor(name: string, help: string, labelNames: L) {
    super(name, help, labelNames, () => new GaugeChild());
  }

  protected renderSeries(out: string[], child: GaugeChild, labelText: string): void {
    out.push(sampleLine(this.name, labelText, child.value));
  }
}

/** A histogram family; see {@linkcode HistogramChild}. */
export class Histogram<L extends readonly string[] = readonly string[]>
  extends Family<L, HistogramChild> {
  /** Always `"histogram"`. */
  readonly type = "histogram";
  /** Finite upper bounds, strictly increasing; `+Inf` is implicit. */
  readonly buckets: readonly number[];
  /** `le` label values, pre-formatted, ending with `+Inf`. */
  readonly #leText: readonly string[];

  /** Use {@linkcode Registry.histogram} instead. */
  constructor(name: string, help: string, labelNames: L, buckets: readonly number[]) {
    const bounds = validateBuckets(name, buckets);
    super(name, help, labelNames, () => new HistogramChild(bounds));
    // `bounds` stays unfrozen: V8 reads frozen arrays several times slower in observe().
    this.buckets = Object.freeze(bounds.slice());
    this.#leText = [...bounds.map(formatNumber), "+Inf"];
  }

  protected renderSeries(out: string[], child: HistogramChild, labelText: string): void {
    const prefix = labelText === "" ? "" : `${labelText},`;
    const cumulative = child.cumulativeCounts();
    for (let i = 0; i < cumulative.length; i++) {
      out.push(
        `${this.name}_bucket{${prefix}le="${this.#leText[i]}"} ${formatNumber(cumulative[i]!)}`,
      );
    }
    out.push(sampleLine(`${this.name}_sum`, labelText, child.sum));
    out.push(sampleLine(`${this.name}_count`, labelText, child.count));
  }
}

/** Any family this registry holds. */
export type AnyMetric = Counter | Gauge | Histogram;

/**
 * Holds metric families and renders them in Prometheus text format 0.0.4.
 *
 * Families render in registration order, children in creation order. Every family
 * writes its `# HELP`/`# TYPE` lines even before it has samples, so the full schema is
 * visible on the first scrape.
 *
 * @example
 * ```ts
 * const registry = new Registry();
 * const requests = registry.counter("http_requests_total", "Requests served.", ["code"]);
 * const ok = requests.labels("200"); // cache at startup
 * ok.inc();
 * registry.render(); // "# HELP http_requests_total ...\n...http_requests_total{code=\"200\"} 1\n"
 * ```
 */
export class Registry {
  readonly #families = new Map<string, AnyMetric>();
  /** Every sample/family name in use → the family that owns it, to catch collisions. */
  readonly #owners = new Map<string, string>();
  readonly #collectors: (() => void)[] = [];

  /**
   * Registers a counter.
   *
   * @throws {TypeError} on an invalid or already used name, or invalid label names.
   */
  counter<const L extends readonly string[]>(
    name: string,
    help: string,
    labelNames: L,
  ): Counter<L> {
    this.#validate(name, help, labelNames, "counter", [name]);
    return this.#add(new Counter(name, help, labelNames), [name]);
  }

  /**
   * Registers a gauge.
   *
   * @throws {TypeError} on an invalid or already used name, or invalid label names.
   */
  gauge<const L extends readonly string[]>(name: string, help: string, labelNames: L): Gauge<L> {
    this.#validate(name, help, labelNames, "gauge", [name]);
    return this.#add(new Gauge(name, help, labelNames), [name]);
  }

  /**
   * Registers a histogram.
   *
   * @param buckets Finite upper bounds, strictly increasing; a trailing `Infinity` is
   *   accepted and dropped because `+Inf` is always present.
   * @throws {TypeError} on an invalid or already used name (including the `_bucket`,
   *   `_sum` and `_count` sample names), invalid label names or a `le` label.
   * @throws {RangeError} on unsorted, duplicate or NaN buckets.
   */
  histogram<const L extends readonly string[]>(
    name: string,
    help: string,
    labelNames: L,
    buckets: readonly number[],
  ): Histogram<L> {
    const names = [name, `${name}_bucket`, `${name}_sum`, `${name}_count`];
    this.#validate(name, help, labelNames, "histogram", names);
    return this.#add(new Histogram(name, help, labelNames, buckets), names);
  }

  /**
   * Runs `fn` at the start of every {@linkcode render}, e.g. to set a gauge from
   * `Deno.memoryUsage().rss`. Errors thrown by `fn` propagate out of `render()`.
   *
   * @returns a function that unregisters `fn`.
   */
  onCollect(fn: () => void): () => void {
    this.#collectors.push(fn);
    return () => {
      const i = this.#collectors.indexOf(fn);
      if (i !== -1) this.#collectors.splice(i, 1);
    };
  }

  /** Renders all families; the result ends with a newline unless the registry is empty. */
  render(): string {
    for (const collect of this.#collectors) collect();
    const out: string[] = [];
    for (const family of this.#families.values()) family.render(out);
    return out.length === 0 ? "" : `${out.join("\n")}\n`;
  }

  #add<M extends AnyMetric>(family: M, sampleNames: readonly string[]): M {
    this.#families.set(family.name, family);
    for (const n of sampleNames) this.#owners.set(n, family.name);
    return family;
  }

  #validate(
    name: string,
    help: string,
    labelNames: readonly string[],
    type: MetricType,
    sampleNames: readonly string[],
  ): void {
    const fail = (why: string) => new TypeError(`Cannot register ${type} "${name}": ${why}`);
    if (!METRIC_NAME.test(name)) throw fail(`name must match ${METRIC_NAME.source}`);
    if (help === "") throw fail("help text is empty");
    for (const n of sampleNames) {
      const owner = this.#owners.get(n);
      if (owner === undefined) continue;
      throw fail(
        owner === name ? "already registered" : `name "${n}" is already used by "${owner}"`,
      );
    }
    const seen = new Set<string>();
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__")) {
        throw fail(`label name "${label}" must match ${LABEL_NAME.source} and not start with __`);
      }
      if (type === "histogram" && label === "le") throw fail(`label name "le" is reserved`);
      if (seen.has(label)) throw fail(`duplicate label name "${label}"`);
      seen.add(label);
    }
  }
}

/**
 * Formats a sample value: integers without exponent (`1e21` → `1000000000000000000000`),
 * `+Inf`, `-Inf` and `NaN` as Prometheus spells them, other numbers as JavaScript does
 * (`0.25`, `1e-7`), which Prometheus parses.
 */
export function formatNumber(v: number): string {
  if (Number.isInteger(v)) return Math.abs(v) < 1e21 ? String(v) : BigInt(v).toString();
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v); // "NaN" included
}

/** Escapes a label value: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  // Fast path: most values (upstream names, status codes) need no escaping.
  if (!/[\\"\n]/.test(value)) return value;
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

function escapeHelp(help: string): string {
  return help.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

function sampleLine(name: string, labelText: string, value: number): string {
  return labelText === ""
    ? `${name} ${formatNumber(value)}`
    : `${name}{${labelText}} ${formatNumber(value)}`;
}

/** Returns a private copy of `buckets` without a trailing `Infinity`, or throws. */
function validateBuckets(name: string, buckets: readonly number[]): number[] {
  const bounds = buckets.at(-1) === Infinity ? buckets.slice(0, -1) : buckets.slice();
  for (let i = 0; i < bounds.length; i++) {
    const b = bounds[i]!;
    if (!Number.isFinite(b)) {
      throw new RangeError(`Cannot register histogram "${name}": bucket ${b} is not finite`);
    }
    if (i > 0 && !(b > bounds[i - 1]!)) {
      throw new RangeError(
        `Cannot register histogram "${name}": buckets must be strictly increasing, ` +
          `got ${bounds[i - 1]} then ${b}`,
      );
    }
  }
  return bounds;
}
