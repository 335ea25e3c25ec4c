/**
 * split2 ships no type declarations, and this repository does not depend on @types/split2.
 * This declares the one call validate-stdin.ts makes. In your own project, install
 * `@types/split2` instead of copying this file.
 */
declare module 'split2' {
  import type { Transform, TransformOptions } from 'node:stream';

  /** A Transform from bytes to one string per line (or whatever `mapper` returns; `undefined` drops the line). */
  function split2(mapper?: (line: string) => unknown, options?: TransformOptions & { maxLength?: number; skipOverflow?: boolean }): Transform;
  export default split2;
}
