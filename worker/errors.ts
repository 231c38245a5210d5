/**
 * Errors the Worker answers with. Each has a stable machine-readable `code` (part of the API) and an
 * HTTP status; `onError` in index.ts turns them into `{ error: { code, message } }`. Anything that is not
 * an AppError becomes a generic 500 `internal` without details.
 */
export class AppError extends Error {
  override readonly name = 'AppError';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 410 | 413 | 415 | 422 | 429 | 503,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}
