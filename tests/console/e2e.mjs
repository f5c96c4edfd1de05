// End-to-end tests of Baton's web console in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is downloaded). Run by tests/api/console.rs against the
// real binary:
//
//   node tests/console/e2e.mjs --base http://127.0.0.1:PORT --demo-agents http://127.0.0.1:PORT2 \
//        --screenshots target/console-screenshots
//
// Every scenario gets a fresh browser context and fails on any console error or uncaught page
// error (but the one scenario about a failed request, which expects the browser's own report of
// it). The last line is "N passed, M failed"; the exit code is 0 only when none failed.

import { createServer } from 'node:http';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const BASE = args.base;
const DEMO_AGENTS = args['demo-agents'];
const SHOTS = args.screenshots ?? 'target/console-screenshots';
const CHROMIUM = args.chromium ?? '/usr/bin/chromium';
const ONLY = args.only ? new RegExp(args.only) : null;
// A second server run with --api-keys-file, and a user key of it (the sign-in scenario).
const KEYED_BASE = args['keyed-base'];
const KEY = args.key;
if (!BASE || !DEMO_AGENTS) {
  console.error('usage: node e2e.mjs --base URL --demo-agents URL [--screenshots DIR] [--only REGEX]');
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });
// A failed scenario's screenshot belongs to its run only.
for (const name of readdirSync(SHOTS).filter((n) => n.startsWith('failed-'))) rmSync(join(SHOTS, name));

const TIMEOUT = 20_000;

// ---- a tiny runner ----------------------------------------------------------------------------

const scenarios = [];
function scenario(name, fn, { expectFailedRequests = false, viewport } = {}) {
  scenarios.push({ name, fn, expectFailedRequests, viewport });
}

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

async function waitUntil(what, check, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** The API, from the test's side (node's fetch). */
async function api(method, path, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

// ---- helpers over the page --------------------------------------------------------------------

async function send(page, prompt) {
  await page.getByLabel('Message').fill(prompt);
  await page.getByRole('button', { name: 'Send' }).click();
}

function questions(page) {
  return page.getByTestId('question');
}

function openQuestion(page, hasText) {
  const open = page.getByTestId('question').filter({ has: page.getByTestId('answer-input') });
  return hasText ? open.filter({ hasText }) : open;
}

async function answer(question, text) {
  await question.getByLabel('Answer').fill(text);
  await question.getByRole('button', { name: 'Answer' }).click();
}

async function threadIdOf(page) {
  const match = page.url().match(/#\/chat\/([^/]+)$/);
  assert(match, `the thread id is in the URL: ${page.url()}`);
  return decodeURIComponent(match[1]);
}

async function statusOf(page) {
  return page.getByTestId('thread-status').getAttribute('data-status');
}

async function waitStatus(page, status) {
  await waitUntil(`status ${status}`, async () => (await statusOf(page)) === status);
}

// ---- scenarios --------------------------------------------------------------------------------

scenario('a full conversation: a question from the planner, the answer, completion', async ({ page }) => {
  await page.goto(`${BASE}/`);
  await page.getByTestId('welcome').waitFor();
  await shot(page, 'chat-new');
  await send(page, 'Help me analyze data but I need guidance');
  const question = openQuestion(page);
  await question.waitFor({ timeout: TIMEOUT });
  const asker = await question.getByTestId('question-asker').textContent();
  assert(/planner/i.test(asker), `the planner is named as the asker: ${asker}`);
  assert((await question.getAttribute('data-asked-by')) === 'planner', 'data-asked-by=planner');
  await waitStatus(page, 'pending_user_input');
  assert(await page.getByLabel('Message').isDisabled(), 'the composer waits for the answer');
  const thread = await threadIdOf(page);
  await shot(page, 'chat-question');
  await answer(question, 'sales data for Q3, find trends');
  const final = page.getByTestId('final-response');
  await final.waitFor({ timeout: TIMEOUT });
  const text = await final.textContent();
  assert(text.includes('Analysis of sales data'), `the final response: ${text}`);
  await waitStatus(page, 'completed');
  const pair = page.getByTestId('task-pair').first();
  await waitUntil('the task/agent pair', async () => (await pair.textContent()).includes('demo.data-analysis'));
  const progress = page.getByTestId('task-progress').filter({ hasText: 'demo.data-analysis' });
  await progress.waitFor({ timeout: TIMEOUT });
  assert((await progress.getAttribute('data-state')) === 'done', 'the task is shown done');
  assert(await page.getByTestId('activity-node').count() >= 5, 'the nodes are shown');
  assert((await page.getByTestId('answer').textContent()).includes('sales data for Q3'), 'the answer stays in the conversation');
  // The server agrees.
  const { body } = await api('GET', `/api/chat/status/${thread}`);
  assert(body.status === 'completed', `server status ${body.status}`);
  await shot(page, 'chat-completed');
});

scenario('two agents ask at once: two answer boxes, answered separately', async ({ page }) => {
  await page.goto(`${BASE}/#/chat`);
  await send(page, 'Translate my notes into French and translate my letter into German');
  await waitUntil('two open questions', async () => (await openQuestion(page).count()) === 2);
  for (const q of await questions(page).all()) {
    assert((await q.getAttribute('data-asked-by')) === 'agent', 'an agent asks');
    const asker = await q.getByTestId('question-asker').textContent();
    assert(asker.includes('demo.translation'), `the asking agent is named: ${asker}`);
  }
  await shot(page, 'chat-two-questions');
  // The German one first, though it was asked second.
  await answer(openQuestion(page, 'German'), 'Dear Sir');
  await waitUntil('one open question left', async () => (await openQuestion(page).count()) === 1);
  assert((await openQuestion(page).textContent()).includes('French'), 'the French question still waits');
  await waitStatus(page, 'pending_user_input');
  await answer(openQuestion(page, 'French'), 'Meeting at noon');
  const final = page.getByTestId('final-response');
  await final.waitFor({ timeout: TIMEOUT });
  const text = await final.textContent();
  assert(text.includes('Translation into French of "Meeting at noon"'), `French: ${text}`);
  assert(text.includes('Translation into German of "Dear Sir"'), `German: ${text}`);
  assert(await page.getByTestId('task-pair').count() === 2, 'two tasks with their agents');
});

scenario('a reload and a second tab in the middle show the same question, still answerable', async ({ page, context }) => {
  await page.goto(`${BASE}/#/chat`);
  await send(page, 'Help me analyze data but I need guidance');
  await openQuestion(page).waitFor({ timeout: TIMEOUT });
  const thread = await threadIdOf(page);
  await page.reload();
  await openQuestion(page).waitFor({ timeout: TIMEOUT });
  assert(await threadIdOf(page) === thread, 'the same thread after the reload');
  assert((await page.getByTestId('user-message').textContent()).includes('I need guidance'), 'the prompt is shown again');
  await waitStatus(page, 'pending_user_input');
  const second = await context.newPage();
  watch(second, this_errors(context));
  await second.goto(`${BASE}/#/chat/${encodeURIComponent(thread)}`);
  await openQuestion(second).waitFor({ timeout: TIMEOUT });
  await answer(openQuestion(page), 'customer churn data, what drives it');
  await page.getByTestId('final-response').waitFor({ timeout: TIMEOUT });
  // The other tab follows the same thread live.
  await second.getByTestId('final-response').waitFor({ timeout: TIMEOUT });
  await waitStatus(second, 'completed');
  assert(await openQuestion(second).count() === 0, 'no answer box is left in the second tab');
  assert((await second.getByTestId('answer').textContent()).includes('customer churn'), 'the second tab shows the answer');
});

scenario('fork from the timeline, then go on in the branch; the original stays as it was', async ({ page }) => {
  // A thread that asked and was answered.
  const started = await api('POST', '/api/chat', { prompt: 'Help me analyze data but I need guidance' });
  const thread = started.body.thread_id;
  await api('POST', '/api/chat/continue', { thread_id: thread, response: 'sales data' });
  await page.goto(`${BASE}/#/timeline/${encodeURIComponent(thread)}`);
  const checkpoints = page.getByTestId('checkpoint');
  await waitUntil('the checkpoints', async () => (await checkpoints.count()) >= 8);
  const versions = await checkpoints.evaluateAll((els) => els.map((el) => Number(el.dataset.version)));
  assert(versions.every((v, i) => i === 0 || v > versions[i - 1]), `oldest first: ${versions}`);
  const waiting = checkpoints.filter({ has: page.locator('[data-status="pending_user_input"]') }).first();
  await waitUntil('what changed at the question', async () => (await waiting.textContent()).includes('asks'));
  const writer = await waiting.getByTestId('checkpoint-writer').textContent();
  assert(/^baton-/.test(writer), `the writer process: ${writer}`);
  await shot(page, 'timeline');
  await waiting.getByRole('button', { name: 'Fork' }).click();
  await waitUntil('the fork opens', async () => /#\/chat\//.test(page.url()) && (await threadIdOf(page)) !== thread);
  const fork = await threadIdOf(page);
  const question = openQuestion(page);
  await question.waitFor({ timeout: TIMEOUT });
  await page.getByTestId('fork-note').filter({ hasText: thread }).waitFor({ timeout: TIMEOUT });
  await answer(question, "Actually, what's the weather in Oslo?");
  const final = page.getByTestId('final-response');
  await final.waitFor({ timeout: TIMEOUT });
  assert((await final.textContent()).includes('Weather in Oslo'), 'the branch went its own way');
  const original = await api('GET', `/api/chat/status/${thread}`);
  assert(original.body.final_response.includes('sales'), 'the original is untouched');
  const branch = await api('GET', `/api/chat/status/${fork}`);
  assert(branch.body.status === 'completed', 'the branch completed');
});

scenario('threads: newest first, status at a glance, load more, open, delete', async ({ page }) => {
  // More threads than one page holds.
  const made = [];
  for (let i = 0; i < 22; i += 1) {
    const { body } = await api('POST', '/api/chat', { prompt: `What is the weather in Oslo (${i})` });
    made.push(body.thread_id);
  }
  const waiting = await api('POST', '/api/chat', { prompt: 'Help me analyze data but I need guidance' });
  await page.goto(`${BASE}/#/threads`);
  const items = page.getByTestId('thread-item');
  await items.first().waitFor({ timeout: TIMEOUT });
  assert(await items.first().getAttribute('data-thread-id') === waiting.body.thread_id, 'the newest first');
  assert((await items.first().getByTestId('status').getAttribute('data-status')) === 'pending_user_input', 'its status');
  assert((await items.first().getByTestId('thread-question').textContent()).length > 10, 'what it asks');
  const firstPage = await items.count();
  assert(firstPage === 20, `a page of 20: ${firstPage}`);
  await shot(page, 'threads');
  await page.getByRole('button', { name: 'Load more' }).click();
  await waitUntil('the next page', async () => (await items.count()) > firstPage);
  const ids = await items.evaluateAll((els) => els.map((el) => el.dataset.threadId));
  assert(new Set(ids).size === ids.length, 'no thread twice');
  // Delete one.
  const victim = made[made.length - 1];
  const row = page.locator(`[data-testid="thread-item"][data-thread-id="${victim}"]`);
  await row.getByRole('button', { name: 'Delete' }).click();
  await row.waitFor({ state: 'detached', timeout: TIMEOUT });
  const gone = await api('GET', `/api/threads/${victim}/history`);
  assert(gone.status === 404, `deleted on the server: ${gone.status}`);
  // Open one.
  await items.first().getByTestId('open-thread').click();
  await openQuestion(page).waitFor({ timeout: TIMEOUT });
  assert(await threadIdOf(page) === waiting.body.thread_id, 'opened the thread');
  // New.
  await page.getByRole('link', { name: 'Threads' }).click();
  await page.getByTestId('new-thread').click();
  await page.getByTestId('welcome').waitFor();
});

scenario('an agent reply with <script> and <img onerror> is shown as text and never runs', async ({ page }) => {
  const hostile = await hostileAgent();
  try {
    await page.goto(`${BASE}/#/agents`);
    await page.getByText('Pasted card').click();
    const card = {
      name: 'Haiku Writer', description: 'Writes haiku poems about any topic', url: hostile.url, version: '1.0.0',
      capabilities: {}, defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'],
      skills: [{ id: 'haiku', name: 'Write haiku', description: 'Writes a haiku poem', tags: ['haiku', 'poem', 'poetry'], examples: ['Write a haiku about autumn'] }],
    };
    await page.getByLabel('Card JSON').fill(JSON.stringify(card, null, 2));
    await page.getByRole('button', { name: 'Register' }).click();
    const registered = page.getByTestId('agent-card').filter({ hasText: 'Haiku Writer' });
    await registered.waitFor({ timeout: TIMEOUT });
    await page.getByTestId('notice').filter({ hasText: 'Registered Haiku Writer' }).waitFor();
    await page.getByRole('link', { name: 'Chat' }).click();
    await send(page, 'Write a haiku about autumn leaves');
    const final = page.getByTestId('final-response');
    await final.waitFor({ timeout: TIMEOUT });
    const text = await final.textContent();
    assert(text.includes(hostile.payloadScript), `the script tag is shown as text: ${text}`);
    assert(text.includes('<img src=x onerror='), `the img tag is shown as text: ${text}`);
    assert(await final.locator('script, img, iframe').count() === 0, 'no element was made from the reply');
    const links = await final.locator('a').evaluateAll((els) => els.map((a) => ({ href: a.getAttribute('href'), rel: a.rel })));
    assert(links.length === 1 && links[0].href === 'https://example.com/haiku' && links[0].rel.includes('noopener'), `only the https link is a link: ${JSON.stringify(links)}`);
    assert(text.includes('[click me](javascript:'), 'the javascript: link stays text');
    await page.waitForTimeout(300);
    const flag = await page.evaluate(() => window.__pwned);
    assert(flag === undefined, `the reply ran: ${flag}`);
    assert(hostile.calls() >= 1, 'the hostile agent was called');
    await shot(page, 'chat-untrusted-reply');
  } finally {
    hostile.close();
    // Gone from the directory, so no later request is routed to it.
    for (const hit of (await api('GET', '/api/agents/search?q=haiku')).body ?? []) {
      await api('DELETE', `/api/agents/${encodeURIComponent(hit.agent.id)}`);
    }
  }
});

scenario('agents: search with filters, register by URL from `baton demo-agents`, rate, remove', async ({ page }) => {
  // The analyst called at least once by this server, so it has measured figures.
  const asked = await api('POST', '/api/chat', { prompt: 'Help me analyze data but I need guidance' });
  await api('POST', '/api/chat/continue', { thread_id: asked.body.thread_id, response: 'sales data' });
  await page.goto(`${BASE}/#/agents`);
  const cards = page.getByTestId('agent-card');
  await cards.first().waitFor({ timeout: TIMEOUT });
  assert(await cards.count() >= 7, 'the demo agents are listed');
  // Measured figures of an agent the other scenarios called.
  await page.getByLabel('Search', { exact: true }).fill('sales data');
  await page.getByRole('button', { name: 'Search' }).click();
  const analyst = cards.filter({ hasText: 'demo.data-analysis' });
  await analyst.waitFor({ timeout: TIMEOUT });
  assert(/\d+%/.test(await analyst.getByTestId('agent-success').textContent()), 'a measured success rate');
  assert(/ms/.test(await analyst.getByTestId('agent-latency').textContent()), 'a measured latency');
  assert((await analyst.getByTestId('agent-skills').textContent()).includes('Analyze'), 'its skills');
  // Filters: the highest price, then the lowest rating and a capability.
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.getByLabel('Max price (USD per call)').fill('0.001');
  await page.getByRole('button', { name: 'Search' }).click();
  await waitUntil('only the cards within the price', async () => {
    const ids = await cards.evaluateAll((els) => els.map((el) => el.dataset.agentId));
    return ids.includes('demo.weather') && ids.includes('demo.currency') && !ids.includes('demo.charts');
  });
  await page.getByLabel('Max price (USD per call)').fill('');
  await page.getByLabel('Min rating').fill('4.6');
  await page.getByLabel('Capabilities').fill('weather');
  await page.getByRole('button', { name: 'Search' }).click();
  await waitUntil('the filtered list', async () => {
    const ids = await cards.evaluateAll((els) => els.map((el) => el.dataset.agentId));
    return ids.length >= 1 && ids.includes('demo.weather') && !ids.includes('demo.news');
  });
  await page.getByRole('button', { name: 'Clear' }).click();
  // Register by URL: the demo agents served over A2A by another process.
  await page.getByLabel('Agent URL').fill(`${DEMO_AGENTS}/news`);
  await page.getByRole('button', { name: 'Register' }).click();
  const news = page.locator('[data-testid="agent-card"][data-agent-id="demo.news"]');
  await waitUntil('the discovered card', async () => (await news.getByTestId('agent-protocol-chip').textContent()) === 'a2a');
  assert((await news.textContent()).includes(DEMO_AGENTS), 'it names the URL it was found at');
  await shot(page, 'agents');
  // Rate it.
  const before = (await api('GET', '/api/agents/demo.news')).body.rating_count;
  await news.getByLabel('Your rating').selectOption('2');
  await news.getByRole('button', { name: 'Rate' }).click();
  const rated = await waitUntil('the rating stored', async () => {
    const { body } = await api('GET', '/api/agents/demo.news');
    return body.rating_count > before ? body : null;
  });
  const shown = `★ ${rated.rating.toFixed(1)} (${rated.rating_count} rating${rated.rating_count === 1 ? '' : 's'})`;
  await waitUntil(`the new rating shown: ${shown}`, async () => (await news.getByTestId('agent-rating').textContent()) === shown);
  // Baton calls it over A2A now.
  await page.getByRole('link', { name: 'Chat' }).click();
  await send(page, 'What is the latest news about robotics');
  const final = page.getByTestId('final-response');
  await final.waitFor({ timeout: TIMEOUT });
  assert((await final.textContent()).includes('robotics'), 'answered by the discovered agent');
  // Remove it.
  await page.getByRole('link', { name: 'Agents' }).click();
  await news.waitFor({ timeout: TIMEOUT });
  await news.getByRole('button', { name: 'Remove' }).click();
  await news.waitFor({ state: 'detached', timeout: TIMEOUT });
  const removed = await api('GET', '/api/agents/demo.news');
  assert(removed.status === 404, 'removed on the server');
});

scenario('a failed request shows its error on the page', async ({ page }) => {
  await page.goto(`${BASE}/#/agents`);
  await page.getByLabel('Agent URL').fill('ftp://example.invalid/agent');
  await page.getByRole('button', { name: 'Register' }).click();
  const error = page.getByRole('alert');
  await error.waitFor({ timeout: TIMEOUT });
  const text = await error.textContent();
  assert(text.includes('422') && /http/i.test(text), `the error says why: ${text}`);
  await page.getByRole('button', { name: 'Dismiss' }).click();
  await error.waitFor({ state: 'hidden' });
  await page.goto(`${BASE}/#/chat/no-such-thread`);
  await page.getByTestId('missing-thread').waitFor({ timeout: TIMEOUT });
  assert(await page.getByRole('alert').isVisible(), 'an unknown thread is an error');
}, { expectFailedRequests: true });

scenario('a server with API keys: the page loads, asks for a key, and works once signed in', async ({ page }) => {
  assert(KEYED_BASE && KEY, 'this scenario needs --keyed-base URL --key KEY');
  await page.goto(`${KEYED_BASE}/#/threads`);
  const signin = page.getByTestId('signin');
  await signin.waitFor({ timeout: TIMEOUT });
  const alert = await page.getByRole('alert').textContent();
  assert(/API key/.test(alert), `the page says a key is needed: ${alert}`);
  await shot(page, 'signin');
  await page.getByLabel('API key').fill('baton_not-a-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await signin.waitFor({ timeout: TIMEOUT });
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await signin.waitFor({ state: 'hidden' });
  await page.goto(`${KEYED_BASE}/#/chat`);
  await send(page, "What's the weather in Paris");
  // The run's events come over the event stream, which sends the key as its header too.
  await page.getByTestId('final-response').waitFor({ timeout: TIMEOUT });
  await waitStatus(page, 'completed');
  assert(await signin.isHidden(), 'no second sign-in');
  assert(await page.getByTestId('activity-node').count() >= 5, 'the nodes are shown, from the stream');
  // The key stays with the tab, not in the page's URL or anywhere the server is told about.
  assert(!page.url().includes(KEY), 'the key is not in the URL');
  await page.getByTestId('signout').click();
  await page.goto(`${KEYED_BASE}/#/threads`);
  await signin.waitFor({ timeout: TIMEOUT });
}, { expectFailedRequests: true });

scenario('keyboard only: reach the message box, send with Enter, answer with Enter', async ({ page }) => {
  await page.goto(`${BASE}/#/threads`);
  await page.getByTestId('thread-item').first().waitFor({ timeout: TIMEOUT });
  await page.goto(`${BASE}/#/chat`);
  await page.getByTestId('welcome').waitFor();
  await page.locator('body').focus();
  await waitUntil('Tab reaches the message box', async () => {
    await page.keyboard.press('Tab');
    return page.evaluate(() => document.activeElement?.dataset?.testid === 'message-input');
  }, 5000);
  await page.keyboard.type('Help me analyze data but I need guidance');
  await page.keyboard.press('Enter');
  await openQuestion(page).waitFor({ timeout: TIMEOUT });
  await waitUntil('focus in the answer box', () => page.evaluate(() => document.activeElement?.dataset?.testid === 'answer-input'), 5000);
  await page.keyboard.type('sales data');
  await page.keyboard.press('Enter');
  await page.getByTestId('final-response').waitFor({ timeout: TIMEOUT });
});

scenario('a phone-sized screen: every screen fits, the chat works', async ({ page }) => {
  for (const [hash, name] of [['#/agents', 'agents'], ['#/threads', 'threads']]) {
    await page.goto(`${BASE}/${hash}`);
    await page.locator('main section').waitFor();
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 0, `${name} fits the width (${overflow}px too wide)`);
    await shot(page, `phone-${name}`);
  }
  await page.goto(`${BASE}/#/chat`);
  await send(page, 'Help me analyze data but I need guidance');
  const question = openQuestion(page);
  await question.waitFor({ timeout: TIMEOUT });
  await answer(question, 'sales data');
  await page.getByTestId('final-response').waitFor({ timeout: TIMEOUT });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 0, `the chat fits the width (${overflow}px too wide)`);
  const box = await page.getByRole('button', { name: 'Send' }).boundingBox();
  assert(box && box.x >= 0 && box.x + box.width <= 390, 'Send is on screen');
  await shot(page, 'phone-chat');
}, { viewport: { width: 390, height: 844 } });

// ---- the hostile agent ------------------------------------------------------------------------

/** An A2A agent on loopback whose every reply carries markup and script. */
function hostileAgent() {
  const payloadScript = '<script>window.__pwned = 1</script>';
  const reply = [
    `Autumn leaves ${payloadScript}`,
    '<img src=x onerror="window.__pwned = 2">',
    '[click me](javascript:window.__pwned=3) and [a real link](https://example.com/haiku)',
    '**bold** and `code`',
  ].join('\n');
  let calls = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      let id = 1;
      try { id = JSON.parse(body).id ?? 1; } catch { /* not JSON */ }
      calls += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        jsonrpc: '2.0', id, result: { task: {
          id: `task-${calls}`, contextId: 'ctx', status: { state: 'TASK_STATE_COMPLETED' },
          artifacts: [{ artifactId: 'a', parts: [{ text: reply }] }],
        } },
      }));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}/`, payloadScript, calls: () => calls, close: () => server.close() });
    });
  });
}

// ---- running ----------------------------------------------------------------------------------

const contextErrors = new WeakMap();
function this_errors(context) {
  return contextErrors.get(context);
}

function watch(page, errors) {
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let passed = 0;
let failed = 0;
for (const s of scenarios) {
  if (ONLY && !ONLY.test(s.name)) continue;
  const context = await browser.newContext({ viewport: s.viewport ?? { width: 1280, height: 860 } });
  const errors = [];
  contextErrors.set(context, errors);
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watch(page, errors);
  const started = Date.now();
  try {
    await s.fn({ page, context });
    const unexpected = s.expectFailedRequests
      ? errors.filter((e) => !e.includes('Failed to load resource'))
      : errors;
    assert(unexpected.length === 0, `no console errors, got:\n  ${unexpected.join('\n  ')}`);
    passed += 1;
    console.log(`ok - ${s.name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed += 1;
    console.log(`not ok - ${s.name}\n  ${String(e.stack ?? e).split('\n').join('\n  ')}`);
    await page.screenshot({ path: join(SHOTS, `failed-${passed + failed}.png`), fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
}
await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
