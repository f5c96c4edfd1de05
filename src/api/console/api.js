// Baton's HTTP API as the console uses it: JSON requests whose failures become `ApiError`s with
// the server's own message, and a thread's event stream (Server-Sent Events read with fetch, so
// the console sees status codes and resumes with Last-Event-ID after a drop).

/** A request that failed: the HTTP status (0 when the server could not be reached) and why. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

// The API key the console signs in with (servers run with --api-keys-file ask for one): kept in
// sessionStorage, so it goes with the tab, and sent as `Authorization: Bearer` on every request,
// the event stream included (it is read with fetch, which can send headers).
const KEY_ITEM = 'baton.apiKey';

/** The key signed in with, or null. */
export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM);
  } catch {
    return null;
  }
}

/** Signs in with `key` (or out, with null) for this tab. */
export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    else sessionStorage.removeItem(KEY_ITEM);
  } catch {
    // Storage refused (private mode): the key lasts until the page is left.
  }
}

function withKey(headers) {
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  return headers;
}

/** Tells the shell the server wants a (valid) key: it shows the sign-in box. */
function unauthorized() {
  window.dispatchEvent(new CustomEvent('baton:unauthorized'));
}

/** Sends a request; resolves to `{ status, data, headers }`, rejects with an `ApiError`. */
export async function request(method, path, body) {
  const init = { method, headers: withKey({ accept: 'application/json' }) };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `The server did not answer (${e.message}).`);
  }
  const text = await response.text().catch(() => '');
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (response.status === 401) unauthorized();
  if (!response.ok) {
    const said = data && typeof data === 'object' ? data.error ?? data.error_message ?? data.detail : null;
    const why = said || `${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, `${method} ${path.split('?')[0]} failed (${response.status}): ${why}`, data);
  }
  return { status: response.status, data, headers: response.headers };
}

const enc = encodeURIComponent;

function query(params) {
  const pairs = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(v)}`);
  return pairs.length ? `?${pairs.join('&')}` : '';
}

/** The API calls of the console, each resolving to the response's JSON (and paging where any). */
export const api = {
  status: async (id) => (await request('GET', `/api/chat/status/${enc(id)}`)).data,
  start: async (body) => (await request('POST', '/api/chat', body)).data,
  answer: async (body) => (await request('POST', '/api/chat/continue', body)).data,
  cancel: async (id) => (await request('POST', `/api/threads/${enc(id)}/cancel`)).data,
  threads: async ({ cursor, status, limit }) => (await request('GET', `/api/threads${query({ cursor, status, limit })}`)).data,
  deleteThread: async (id) => request('DELETE', `/api/threads/${enc(id)}`),
  history: async (id) => (await request('GET', `/api/threads/${enc(id)}/history`)).data,
  fork: async (id, version) => (await request('POST', `/api/threads/${enc(id)}/fork`, { version })).data,
  /** A page of search hits and the cursor of the next (null on the last). */
  search: async (params) => {
    const { data, headers } = await request('GET', `/api/agents/search${query(params)}`);
    return { hits: data ?? [], next: headers.get('x-next-cursor') };
  },
  register: async (card) => (await request('POST', '/api/agents', card)).data,
  discover: async (body) => (await request('POST', '/api/agents/discover', body)).data,
  rate: async (id, rating) => (await request('POST', `/api/agents/${enc(id)}/rate`, { rating })).data,
  removeAgent: async (id) => request('DELETE', `/api/agents/${enc(id)}`),
};

/**
 * Follows a thread's events from its first kept checkpoint (`last_event_id=0`), then live.
 * `onEvent(kind, data)` gets each event; `onTrouble(message | null)` hears when the stream is
 * down (and null once it is back); `onGone()` when the thread no longer exists. With `wait`, a
 * thread not started yet is waited for (the console names the thread of the run it starts).
 * After a drop it reconnects with the last event id it saw, so nothing is told twice.
 */
export function followThread(threadId, { wait = false, onEvent, onTrouble = () => {}, onGone = () => {} }) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;
  let delay = 500;

  async function connect() {
    while (!stopped) {
      const headers = withKey({ accept: 'text/event-stream' });
      if (lastId !== null) headers['last-event-id'] = lastId;
      const url = `/api/threads/${enc(threadId)}/events${query({ last_event_id: 0, wait: wait ? 'true' : undefined })}`;
      try {
        const response = await fetch(url, { headers, signal: controller.signal, cache: 'no-store' });
        if (response.status === 404) {
          onGone();
          return;
        }
        if (response.status === 401) unauthorized();
        if (!response.ok || !response.body) {
          onTrouble(`The event stream failed (${response.status}); retrying.`);
        } else {
          onTrouble(null);
          delay = 500;
          await read(response.body);
        }
      } catch (e) {
        if (stopped) return;
        onTrouble(`The event stream was cut (${e.message}); reconnecting.`);
      }
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 8000);
    }
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        dispatch(block);
      }
    }
  }

  function dispatch(block) {
    let kind = 'message';
    let id = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') kind = value;
      else if (field === 'id') id = value;
      else if (field === 'data') data.push(value);
    }
    if (id !== null) lastId = id;
    if (!data.length) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join('\n'));
    } catch {
      return;
    }
    if (!stopped) onEvent(kind, parsed);
  }

  connect();
  return {
    stop() {
      stopped = true;
      controller.abort();
    },
  };
}
