// common.js: what every page shares: the theme toggle, JSON calls to the
// API with its one error shape (docs/api.md), and small DOM helpers.

export const $ = (sel, root = document) => root.querySelector(sel);

// el('div', {class: 'x', text: 'y'}, child...): builds nodes without HTML
// strings, so nothing from the server is ever parsed as markup here.
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') n.textContent = v;
    else if (k === 'class') n.className = v;
    else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children)
    if (c !== null && c !== undefined)
      n.append(c instanceof Node ? c : String(c));
  return n;
}

// An API failure: status, the stable `code`, a message for people, and the
// Retry-After seconds when the server sent them.
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export async function errorFrom(res) {
  let code = 'http_' + res.status;
  let message = res.statusText || 'request failed';
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) { /* not JSON: keep the status line */ }
  const ra = parseInt(res.headers.get('Retry-After') || '', 10);
  return new ApiError(res.status, code, message, Number.isFinite(ra) ? ra : null);
}

// api('POST', '/api/x', body) -> parsed JSON, or throws ApiError.
export async function api(method, path, body, opts = {}) {
  const init = { method, headers: {}, credentials: 'same-origin',
                 signal: opts.signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'cannot reach the server; check your connection', null);
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  return res.json();
}

// A sentence a visitor can act on, for any API error.
export function describeError(e) {
  if (!(e instanceof ApiError)) return String(e && e.message || e);
  const wait = e.retryAfter != null ? ` Try again in ${e.retryAfter} s.` : '';
  switch (e.code) {
    case 'rate_limited': return e.retryAfter != null
      ? `You are going a little fast.${wait}` : `You are going a little fast: ${e.message}.`;
    case 'daily_cap': return `You reached today's vote limit.${wait} Thank you for voting!`;
    case 'busy': return e.status === 503
      ? `The models are busy right now.${wait || ' Try again in a moment.'}`
      : 'Wait for both answers to finish first.';
    case 'turn_limit': return 'This battle reached its turn limit: vote, or start a new battle.';
    case 'prompt_too_large': return `Your message is too long: ${e.message}. Shorten it and send again.`;
    case 'too_large': return 'Your message is too long. Shorten it and send again.';
    case 'already_voted': return 'This battle already has your vote.';
    case 'not_ready': return 'Both answers must finish before you vote.';
    case 'battle_failed': return 'A model failed in this battle, so it cannot be voted on.';
    case 'voted': return 'This battle is over: start a new battle to keep chatting.';
    case 'unavailable': return `The service is temporarily unavailable.${wait}`;
    case 'network': return e.message;
    default: return e.message + wait;
  }
}

// Theme: follows prefers-color-scheme until the visitor picks one; the pick
// is stored and applied as <html data-theme>. theme.js applies it before
// first paint; this wires the toggle button.
export function initTheme(button) {
  if (!button) return;
  const sys = () => matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  const current = () => document.documentElement.dataset.theme || sys();
  const show = () => {
    const t = current();
    button.setAttribute('aria-pressed', t === 'dark' ? 'true' : 'false');
    button.textContent = t === 'dark' ? '☾ Dark' : '☀ Light';
    button.title = 'Switch to the ' + (t === 'dark' ? 'light' : 'dark') + ' theme';
  };
  button.addEventListener('click', () => {
    const next = current() === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem('arena-theme', next); } catch (_) { /* private mode */ }
    show();
    document.dispatchEvent(new CustomEvent('themechange'));
  });
  show();
}

export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export const fmt = {
  int: (x) => x == null ? '–' : Math.round(x).toLocaleString('en-US'),
  num: (x, d = 1) => x == null || !Number.isFinite(x) ? '–' : x.toFixed(d),
  price: (x) => x == null ? '–' : x === 0 ? 'free' : '$' + (x < 1 ? x.toFixed(3) : x.toFixed(2)),
  pct: (x) => x == null || !Number.isFinite(x) ? '–' : Math.round(100 * x) + '%',
};
