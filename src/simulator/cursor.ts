/**
 * Opaque page cursors: base64url of `JSON ‖ HMAC-SHA256(JSON)[0..12]`.
 *
 * A cursor denotes a position in the stream, never a page: `p` is an absolute record index
 * (ascending: the next record to serve; descending: one past it), so the page is computed when
 * the cursor is presented and records appended since are included. The sort order and the
 * `from`/`to` bounds travel inside the cursor, as the real API keeps them. `e` is the simulator's
 * cursor epoch: `invalidateCursors()` bumps it, turning every cursor issued before into a 400.
 * The MAC makes a tampered or made-up cursor a 400 rather than a page from a random position.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface CursorState {
  /** Absolute record index; see the file header. */
  p: number;
  s: 'asc' | 'desc';
  /** `from` bound, epoch ms, inclusive. */
  f?: number;
  /** `to` bound, epoch ms, exclusive. */
  t?: number;
  /** Cursor epoch. */
  e: number;
}

const MAC_BYTES = 12;

export class CursorCodec {
  readonly #key: string;

  constructor(key: string) {
    this.#key = key;
  }

  encode(state: CursorState): string {
    const json = Buffer.from(JSON.stringify(state));
    return Buffer.concat([json, this.#mac(json)]).toString('base64url');
  }

  /** The state inside `token`, or undefined if it is garbage or was not issued with this key. */
  decode(token: string): CursorState | undefined {
    if (token.length < 16 || token.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
    const raw = Buffer.from(token, 'base64url');
    if (raw.length <= MAC_BYTES) return undefined;
    const json = raw.subarray(0, raw.length - MAC_BYTES);
    if (!timingSafeEqual(raw.subarray(raw.length - MAC_BYTES), this.#mac(json))) return undefined;
    let v: unknown;
    try {
      v = JSON.parse(json.toString('utf8'));
    } catch {
      return undefined;
    }
    if (typeof v !== 'object' || v === null) return undefined;
    const c = v as Record<string, unknown>;
    const okNum = (x: unknown): boolean => x === undefined || (typeof x === 'number' && Number.isFinite(x));
    if (!Number.isSafeInteger(c.p) || (c.p as number) < 0) return undefined;
    if (c.s !== 'asc' && c.s !== 'desc') return undefined;
    if (!okNum(c.f) || !okNum(c.t) || !Number.isSafeInteger(c.e)) return undefined;
    return c as unknown as CursorState;
  }

  #mac(data: Buffer): Buffer {
    return createHmac('sha256', this.#key).update(data).digest().subarray(0, MAC_BYTES);
  }
}
