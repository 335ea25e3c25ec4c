/** Time as a collaborator, so tests can drive age limits and retry waits without real waiting. */
export interface Clock {
  /** The current time, epoch ms. */
  now(): number;
  /** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms, signal) {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const onAbort = (): void => {
        clearTimeout(timer);
        resolve();
      };
      // A wait may be long (a rate-limit reset can be hours away) and must never outlive an
      // abort. setTimeout fires at once for delays over 2^31-1 ms, so long waits go in steps.
      const until = Date.now() + Math.max(0, ms);
      let timer: NodeJS.Timeout;
      const step = (): void => {
        const left = until - Date.now();
        if (left <= 0) {
          signal?.removeEventListener('abort', onAbort);
          resolve();
          return;
        }
        timer = setTimeout(step, Math.min(left, 2 ** 31 - 1));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      step();
    });
  },
};
