/**
 * A strict parser of the Prometheus text exposition format, version 0.0.4, for tests.
 * https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 *
 * Stricter than Prometheus itself in one way the tests want: every sample's family must have a
 * `# TYPE` line before it (the format would treat it as untyped). Everything else follows the
 * format and Go's expfmt parser:
 *
 * - The text is lines ending in `\n` (the last one too); blank lines and `#` comments other than
 *   `# HELP` / `# TYPE` are ignored.
 * - Metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`
 *   (`__name__` is reserved); no label name twice in one sample. A label set may end in a comma.
 * - Label values escape only `\\`, `\"` and `\n`; HELP text only `\\` and `\n`. Any other
 *   backslash sequence is an error.
 * - A value is what Go's `strconv.ParseFloat` reads in decimal: `1`, `-2.5e-3`, `.5`, and the
 *   special values NaN, Inf, +Inf, -Inf, Infinity in any letter case (prom-client writes `Nan`).
 *   Hexadecimal floats are rejected. An optional integer timestamp (ms) may follow; it is checked
 *   and dropped.
 * - One HELP and one TYPE at most per family, both before its first sample; all lines of a family
 *   form one group (a family seen again after another one started is an error).
 * - No sample twice (same name and label set).
 * - A counter's samples are named as its family and are ≥ 0 (NaN is rejected).
 * - A histogram's samples are `<name>_bucket` (with an `le` label that is a number), `<name>_sum`
 *   and `<name>_count` (no `le`). Per label set (without `le`): bucket counts non-decreasing in
 *   `le` order, a `+Inf` bucket equal to `_count`, `_sum` and `_count` present, counts ≥ 0.
 * - A summary's samples are `<name>` (with a `quantile` label, a number in [0, 1]), `<name>_sum`
 *   and `<name>_count` (no `quantile`); per label set `_sum` and `_count` present, `_count` ≥ 0.
 * - Gauge and untyped samples are named as their family.
 *
 * Errors name the 1-based line number and quote the line.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string;
  samples: Sample[];
}

type FamilyType = Family['type'];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: ReadonlySet<string> = new Set<FamilyType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const INFINITY = /^([+-]?)(?:inf|infinity)$/i;
const NAN = /^nan$/i;
const TIMESTAMP = /^[+-]?\d+$/;

/** A float as Go's strconv.ParseFloat reads it (decimal only), or undefined. */
function parseFloatValue(s: string): number | undefined {
  if (DECIMAL.test(s)) return Number(s);
  const inf = INFINITY.exec(s);
  if (inf !== null) return inf[1] === '-' ? -Infinity : Infinity;
  if (NAN.test(s)) return NaN;
  return undefined;
}

function isBlank(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

/** A canonical key for a label set: sorted name/value pairs. */
function labelKey(labels: Record<string, string>): string {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

interface FamilyState {
  family: Family;
  typeLine: number | undefined;
  helpLine: number | undefined;
  hasSamples: boolean;
}

interface HistogramGroup {
  line: number;
  labels: Record<string, string>;
  buckets: Array<{ le: number; count: number }>;
  sum: number | undefined;
  count: number | undefined;
}

export function parseExposition(text: string): Map<string, Family> {
  const states = new Map<string, FamilyState>();
  const sampleKeys = new Set<string>();
  /** Per histogram/summary family and label set (without le/quantile). */
  const groups = new Map<string, HistogramGroup>();
  /** Families whose group of lines has ended. */
  const finished = new Set<string>();
  let current: string | undefined;

  if (text.length > 0 && !text.endsWith('\n')) {
    const n = text.split('\n').length;
    throw new Error(`line ${n}: the last line does not end with a line feed`);
  }
  const lines = text.split('\n');
  lines.pop();

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const lineNo = i + 1;
    const fail = (msg: string): never => {
      throw new Error(`line ${lineNo}: ${msg}: ${JSON.stringify(line)}`);
    };
    /** Starts (or continues) the group of lines of `name`. */
    const enter = (name: string): void => {
      if (current === name) return;
      if (finished.has(name)) fail(`lines of family ${name} are not contiguous`);
      if (current !== undefined) finished.add(current);
      current = name;
    };
    const stateOf = (name: string): FamilyState => {
      let s = states.get(name);
      if (s === undefined) {
        s = { family: { name, type: 'untyped', help: '', samples: [] }, typeLine: undefined, helpLine: undefined, hasSamples: false };
        states.set(name, s);
      }
      return s;
    };

    let pos = 0;
    while (isBlank(line[pos])) pos++;
    if (pos === line.length) continue; // blank line
    const skipBlanks = (): void => {
      while (isBlank(line[pos])) pos++;
    };
    /** A token up to the next blank (or the end). */
    const token = (): string => {
      const start = pos;
      while (pos < line.length && !isBlank(line[pos])) pos++;
      return line.slice(start, pos);
    };

    if (line[pos] === '#') {
      pos++;
      skipBlanks();
      const keyword = token();
      if (keyword !== 'HELP' && keyword !== 'TYPE') continue; // a comment
      skipBlanks();
      const name = token();
      if (name === '') fail(`# ${keyword} without a metric name`);
      if (!METRIC_NAME.test(name)) fail(`invalid metric name ${JSON.stringify(name)}`);
      enter(name);
      const state = stateOf(name);
      if (state.hasSamples) fail(`# ${keyword} for ${name} after its samples`);
      if (keyword === 'TYPE') {
        if (state.typeLine !== undefined) fail(`duplicate # TYPE for ${name} (first on line ${state.typeLine})`);
        skipBlanks();
        const type = token();
        skipBlanks();
        if (pos !== line.length) fail('unexpected text after the type');
        if (!TYPES.has(type)) fail(`unknown type ${JSON.stringify(type)}`);
        state.typeLine = lineNo;
        state.family.type = type as FamilyType;
      } else {
        if (state.helpLine !== undefined) fail(`duplicate # HELP for ${name} (first on line ${state.helpLine})`);
        skipBlanks();
        let help = '';
        for (; pos < line.length; pos++) {
          const c = line[pos]!;
          if (c !== '\\') {
            help += c;
            continue;
          }
          const next = line[++pos];
          if (next === '\\') help += '\\';
          else if (next === 'n') help += '\n';
          else fail(`invalid escape sequence in HELP: ${next === undefined ? 'backslash at end of line' : JSON.stringify(`\\${next}`)}`);
        }
        state.helpLine = lineNo;
        state.family.help = help;
      }
      continue;
    }

    // A sample: name [{labels}] value [timestamp]
    const nameStart = pos;
    while (pos < line.length && !isBlank(line[pos]) && line[pos] !== '{') pos++;
    const name = line.slice(nameStart, pos);
    if (!METRIC_NAME.test(name)) fail(`invalid metric name ${JSON.stringify(name)}`);
    const labels: Record<string, string> = {};
    if (line[pos] === '{') {
      pos++;
      for (;;) {
        skipBlanks();
        if (pos >= line.length) fail('unterminated label set');
        if (line[pos] === '}') {
          pos++;
          break;
        }
        const lnStart = pos;
        while (pos < line.length && !isBlank(line[pos]) && !'=,}"'.includes(line[pos]!)) pos++;
        const labelName = line.slice(lnStart, pos);
        if (!LABEL_NAME.test(labelName)) fail(`invalid label name ${JSON.stringify(labelName)}`);
        if (labelName === '__name__') fail('label name __name__ is reserved');
        if (Object.hasOwn(labels, labelName)) fail(`duplicate label ${labelName}`);
        skipBlanks();
        if (line[pos] !== '=') fail(`expected "=" after label name ${labelName}`);
        pos++;
        skipBlanks();
        if (line[pos] !== '"') fail(`expected '"' to open the value of label ${labelName}`);
        pos++;
        let v = '';
        for (;;) {
          const c = line[pos];
          if (c === undefined) fail(`unterminated value of label ${labelName}`);
          pos++;
          if (c === '"') break;
          if (c !== '\\') {
            v += c;
            continue;
          }
          const next = line[pos++];
          if (next === '\\') v += '\\';
          else if (next === '"') v += '"';
          else if (next === 'n') v += '\n';
          else fail(`invalid escape sequence in the value of label ${labelName}: ${next === undefined ? 'backslash at end of line' : JSON.stringify(`\\${next}`)}`);
        }
        Object.defineProperty(labels, labelName, { value: v, enumerable: true, writable: true, configurable: true });
        skipBlanks();
        if (line[pos] === ',') {
          pos++;
          continue;
        }
        if (line[pos] === '}') {
          pos++;
          break;
        }
        fail(`expected "," or "}" after the value of label ${labelName}`);
      }
    } else if (!isBlank(line[pos])) {
      fail('missing value');
    }
    skipBlanks();
    const valueText = token();
    if (valueText === '') fail('missing value');
    const v = parseFloatValue(valueText);
    if (v === undefined) fail(`invalid value ${JSON.stringify(valueText)}`);
    const sampleValue = v as number;
    skipBlanks();
    const ts = token();
    if (ts !== '' && !TIMESTAMP.test(ts)) fail(`invalid timestamp ${JSON.stringify(ts)}`);
    skipBlanks();
    if (pos !== line.length) fail('unexpected text after the timestamp');

    // Which family does the sample belong to?
    let state = states.get(name);
    let suffix = '';
    if (state?.typeLine === undefined) {
      state = undefined;
      for (const s of ['_bucket', '_sum', '_count']) {
        if (!name.endsWith(s)) continue;
        const base = states.get(name.slice(0, -s.length));
        if (base?.typeLine === undefined) continue;
        if (base.family.type === 'histogram' || (base.family.type === 'summary' && s !== '_bucket')) {
          state = base;
          suffix = s;
        }
      }
    }
    if (state === undefined) fail(`sample ${name} has no # TYPE line before it`);
    const fam = state!.family;
    enter(fam.name);
    const key = `${name} ${labelKey(labels)}`;
    if (sampleKeys.has(key)) fail(`duplicate sample ${name} with the same labels`);
    sampleKeys.add(key);

    switch (fam.type) {
      case 'counter':
        if (!(sampleValue >= 0)) fail(`counter ${name} has a negative or NaN value`);
        break;
      case 'gauge':
      case 'untyped':
        break;
      case 'histogram': {
        if (suffix === '') fail(`histogram ${fam.name} has a sample named ${name} (expected _bucket, _sum or _count)`);
        const rest = { ...labels };
        let le: number | undefined;
        if (suffix === '_bucket') {
          if (!Object.hasOwn(labels, 'le')) fail(`bucket ${name} has no le label`);
          le = parseFloatValue(labels['le']!);
          if (le === undefined || Number.isNaN(le)) fail(`bucket ${name} has le=${JSON.stringify(labels['le'])}, not a number`);
          delete rest['le'];
        } else if (Object.hasOwn(labels, 'le')) {
          fail(`${name} has an le label`);
        }
        if (suffix !== '_sum' && !(sampleValue >= 0)) fail(`${name} has a negative or NaN count`);
        const gk = `${fam.name} ${labelKey(rest)}`;
        let g = groups.get(gk);
        if (g === undefined) {
          g = { line: lineNo, labels: rest, buckets: [], sum: undefined, count: undefined };
          groups.set(gk, g);
        }
        if (suffix === '_bucket') {
          if (g.buckets.some((b) => b.le === le)) fail(`duplicate bucket le=${labels['le']}`);
          g.buckets.push({ le: le!, count: sampleValue });
        } else if (suffix === '_sum') g.sum = sampleValue;
        else g.count = sampleValue;
        break;
      }
      case 'summary': {
        const rest = { ...labels };
        if (suffix === '') {
          if (!Object.hasOwn(labels, 'quantile')) fail(`summary sample ${name} has no quantile label`);
          const q = parseFloatValue(labels['quantile']!);
          if (q === undefined || !(q >= 0 && q <= 1)) fail(`summary sample ${name} has quantile=${JSON.stringify(labels['quantile'])}, not a number in [0, 1]`);
          delete rest['quantile'];
        } else if (Object.hasOwn(labels, 'quantile')) {
          fail(`${name} has a quantile label`);
        }
        if (suffix === '_count' && !(sampleValue >= 0)) fail(`${name} has a negative or NaN count`);
        const gk = `${fam.name} ${labelKey(rest)}`;
        let g = groups.get(gk);
        if (g === undefined) {
          g = { line: lineNo, labels: rest, buckets: [], sum: undefined, count: undefined };
          groups.set(gk, g);
        }
        if (suffix === '_sum') g.sum = sampleValue;
        else if (suffix === '_count') g.count = sampleValue;
        break;
      }
    }
    state!.hasSamples = true;
    fam.samples.push({ name, labels, value: sampleValue });
  }

  for (const [gk, g] of groups) {
    const famName = gk.slice(0, gk.indexOf(' '));
    const fam = states.get(famName)!.family;
    const what = `${fam.type} ${famName}${labelKey(g.labels)}`;
    const fail = (msg: string): never => {
      throw new Error(`line ${g.line}: ${what}: ${msg}: ${JSON.stringify(lines[g.line - 1])}`);
    };
    if (g.sum === undefined) fail('no _sum sample');
    if (g.count === undefined) fail('no _count sample');
    if (fam.type !== 'histogram') continue;
    const buckets = [...g.buckets].sort((a, b) => a.le - b.le);
    for (let i = 1; i < buckets.length; i++) {
      if (buckets[i]!.count < buckets[i - 1]!.count) fail(`bucket le=${buckets[i]!.le} has ${buckets[i]!.count}, less than bucket le=${buckets[i - 1]!.le} (${buckets[i - 1]!.count})`);
    }
    const inf = buckets[buckets.length - 1];
    if (inf === undefined || inf.le !== Infinity) fail('no le="+Inf" bucket');
    if (inf!.count !== g.count) fail(`the +Inf bucket (${inf!.count}) differs from _count (${g.count})`);
  }

  const out = new Map<string, Family>();
  for (const [name, s] of states) out.set(name, s.family);
  return out;
}

/**
 * The value of the samples named exactly `name` (a sample name: `x_total`, `x_bucket`, `x_sum`,
 * not a family name, unless they coincide) whose labels include every given label (other labels
 * may be present). When several samples match, their values are SUMMED: `value(f, 'x_total')`
 * on a labelled counter is its total over all label values. Undefined when none matches.
 */
export function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  const want = Object.entries(labels);
  for (const fam of families.values()) {
    for (const s of fam.samples) {
      if (s.name !== name) continue;
      if (!want.every(([k, v]) => Object.hasOwn(s.labels, k) && s.labels[k] === v)) continue;
      total = (total ?? 0) + s.value;
    }
  }
  return total;
}
