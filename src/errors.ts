/**
 * All warmsync errors carry a stable code (listed in docs/errors.md). The CLI prints one line
 * `warmsync: CODE: message` and picks the exit code from the class: UsageError exits 2, others 1.
 */

export class WarmsyncError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WarmsyncError';
    this.code = code;
  }
}

/** Bad flags, bad config, unreadable or malformed input files: exit code 2. */
export class UsageError extends WarmsyncError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'UsageError';
  }
}

/** A message or path from the peer that fails validation: never acted on. */
export class ProtocolError extends WarmsyncError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ProtocolError';
  }
}

/** The text of any thrown value, for logs and one-line errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
