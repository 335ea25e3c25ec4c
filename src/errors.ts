/**
 * One error class per failure mode, each with a stable `code` (for programs) and an exit code
 * (for the CLI). Messages never contain the API key: they are built from status codes, error
 * codes from the API body and our own words, never from request headers.
 */

export class PipelineError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;
  /** Process exit code the CLI uses when this error ends a run. */
  readonly exitCode: number;
  constructor(code: string, message: string, exitCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Bad flags, environment or option values. Exit 2. */
export class ConfigError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, 2, options);
  }
}

/** 401: the API key is wrong, expired or revoked, or is not an organization API key. Exit 3. */
export class AuthError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_API_UNAUTHORIZED', message, 3, options);
  }
}

/** 403: the key's creator is not an org admin, or the org has no Atlassian Guard entitlement. Exit 4. */
export class ForbiddenError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_API_FORBIDDEN', message, 4, options);
  }
}

/** 404: the organization id is unknown. Exit 5. */
export class OrgNotFoundError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_API_ORG_NOT_FOUND', message, 5, options);
  }
}

/**
 * The API kept failing after every retry (5xx, resets, malformed pages), or answered with a
 * request error we cannot fix by retrying. Exit 6.
 */
export class ApiError extends PipelineError {
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super('ERR_API', message, 6, options);
    this.status = status;
  }
}

/**
 * The API pointed the walk at another place: the next page as a URL on another host (the only
 * way forward), or a redirect. Never followed, so the key is never sent there; retrying cannot
 * help: `--api-url`, or the proxy or gateway behind it, needs fixing. Exit 10.
 */
export class ForeignLinkError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_API_FOREIGN_LINK', message, 10, options);
  }
}

/** The API rejected our cursor (400 ADMIN-400-1). The source recovers from this itself. */
export class InvalidCursorError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_API_INVALID_CURSOR', message, 6, options);
  }
}

/** Writing an object failed after the SDK's retries; the multipart upload was aborted. Exit 7. */
export class SinkError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SINK', message, 7, options);
  }
}

/** The state file is unreadable, corrupt, for another org, or locked by another process. Exit 8. */
export class StateError extends PipelineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STATE', message, 8, options);
  }
}

/**
 * A replay input cannot be read to its end: a truncated or corrupt compressed file, a JSON
 * document cut short, a missing file or object. The message names the input. Exit 9.
 */
export class InputError extends PipelineError {
  /** The input's name as given (a path, `-` for stdin, or `s3://bucket/key`). */
  readonly input: string;
  constructor(input: string, message: string, options?: { cause?: unknown }) {
    super('ERR_INPUT', message, 9, options);
    this.input = input;
  }
}

/** The run was cancelled through its AbortSignal. */
export class AbortError extends PipelineError {
  constructor(message = 'the run was cancelled', options?: { cause?: unknown }) {
    super('ABORT_ERR', message, 130, options);
  }
}

/** One line for a human: the message, plus the cause's message when it adds something. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? err.cause.message : undefined;
    return cause !== undefined && !err.message.includes(cause) ? `${err.message}: ${cause}` : err.message;
  }
  return String(err);
}
