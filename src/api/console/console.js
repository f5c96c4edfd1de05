// The console's shell: hash routes to screens, the error and notice banners. Each screen is a
// `mount(container, params, shell)` that returns `{ destroy() }`, called when another replaces it.

import { mountChat } from './chat.js';
import { mountThreads, mountTimeline } from './threads.js';
import { mountAgents } from './agents.js';
import { apiKey, setApiKey } from './api.js';

const view = document.getElementById('view');
const errorBox = document.querySelector('[data-testid="error"]');
const errorText = document.querySelector('[data-testid="error-message"]');
const noticeBox = document.querySelector('[data-testid="notice"]');
const noticeText = document.querySelector('[data-testid="notice-message"]');
let noticeTimer = null;

/** What every screen may use of the shell. */
const shell = {
  /** Shows a failure where it cannot be missed, until dismissed or the screen changes. */
  error(message) {
    errorText.textContent = String(message);
    errorBox.hidden = false;
  },
  clearError() {
    errorBox.hidden = true;
    errorText.textContent = '';
  },
  /** A short confirmation, read out politely, gone after a few seconds. */
  notice(message) {
    noticeText.textContent = String(message);
    noticeBox.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeBox.hidden = true; }, 4000);
  },
  /** Goes to a route (`#/chat/ID`, …). */
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

errorBox.querySelector('[data-testid="error-dismiss"]').addEventListener('click', () => shell.clearError());

// Signing in: the page loads without a key; the first 401 shows the box, and a key given there
// is kept for the tab and the screen reloaded with it.
const signin = document.querySelector('[data-testid="signin"]');
const signout = document.querySelector('[data-testid="signout"]');
signout.hidden = !apiKey();
window.addEventListener('baton:unauthorized', () => {
  signin.hidden = false;
  shell.error(apiKey() ? 'The server did not accept this API key: sign in with another.' : 'This server needs an API key: sign in.');
  signin.querySelector('input').focus();
});
signin.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = signin.querySelector('input').value.trim();
  if (!key) return;
  setApiKey(key);
  signin.reset();
  signin.hidden = true;
  signout.hidden = false;
  route();
});
signout.addEventListener('click', () => {
  setApiKey(null);
  signout.hidden = true;
  route();
});

const ROUTES = [
  [/^#\/chat\/([^/]+)$/, 'chat', (m) => mountChat(view, { threadId: decodeURIComponent(m[1]) }, shell)],
  [/^#\/chat\/?$/, 'chat', () => mountChat(view, { threadId: null }, shell)],
  [/^#\/threads\/?$/, 'threads', () => mountThreads(view, {}, shell)],
  [/^#\/timeline\/([^/]+)$/, 'threads', (m) => mountTimeline(view, { threadId: decodeURIComponent(m[1]) }, shell)],
  [/^#\/agents\/?$/, 'agents', () => mountAgents(view, {}, shell)],
];

let current = null;
let first = true;

function route() {
  const hash = location.hash || '#/chat';
  const match = ROUTES.map(([re, screen, mount]) => [hash.match(re), screen, mount]).find(([m]) => m);
  if (!match) {
    history.replaceState(null, '', '#/chat');
    route();
    return;
  }
  const [m, screen, mount] = match;
  current?.destroy();
  shell.clearError();
  while (view.firstChild) view.firstChild.remove();
  for (const link of document.querySelectorAll('.tabs a')) {
    if (link.dataset.screen === screen) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  current = mount(m);
  // After a navigation, keyboard and screen reader users start at the new screen's heading.
  if (!first) view.querySelector('h1')?.focus({ preventScroll: true });
  first = false;
  window.scrollTo(0, 0);
}

window.addEventListener('hashchange', route);
route();
