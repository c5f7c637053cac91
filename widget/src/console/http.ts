// The admin API's wire: JSON in and out, every refusal an `ApiError` built from the API's
// `{"error": {code, message, details}}`.

/** A refusal from the API (or the network: status 0, code `network`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The request field the refusal names (`details.field`: `name`, `config.welcome_message`…). */
    readonly field: string | null = null,
    readonly details: Record<string, unknown> = {},
    /** Seconds to wait before trying again (a 429's `Retry-After`). */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

type Body = Record<string, unknown> | unknown[] | null | undefined;

/**
 * One request. `token` is sent as the bearer; a 204 resolves to `undefined`; `timeoutMs` gives
 * up on a request that hangs (a network error then).
 */
export async function call<T>(method: string, path: string, body?: Body, token?: string | null, timeoutMs?: number): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body != null) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
    res = await fetch(path, { method, headers, body: body != null ? JSON.stringify(body) : undefined, signal });
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached.');
  }
  return read<T>(res);
}

/** The body of a response, or the `ApiError` it carries. */
export async function read<T>(res: Response): Promise<T> {
  if (res.status === 204) return undefined as T;
  const json = (await res.json().catch(() => null)) as Record<string, any> | null;
  if (res.ok) return json as T;
  const error = json?.error ?? {};
  const details = (typeof error.details === 'object' && error.details) || {};
  const after = Number(res.headers.get('retry-after'));
  throw new ApiError(
    res.status,
    typeof error.code === 'string' ? error.code : `http_${res.status}`,
    typeof error.message === 'string' ? error.message : res.statusText || `HTTP ${res.status}`,
    typeof details.field === 'string' ? details.field : null,
    details,
    Number.isFinite(after) && after > 0 ? after : null,
  );
}
