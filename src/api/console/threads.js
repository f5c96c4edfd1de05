// The threads screen (`#/threads`: newest first, a page at a time, open, delete) and a thread's
// timeline (`#/timeline/THREAD`: its kept checkpoints in order, with the node that wrote each,
// when, which process, and what changed; fork from any of them and go on in the fork).

import { api, followThread } from './api.js';
import { h, clear, uid, statusBadge, timeEl, ago, STATUS_LABELS } from './dom.js';

const PAGE = 20;

export function mountThreads(container, _params, shell) {
  let cursor = null;
  let status = '';
  let destroyed = false;
  let loading = false;

  const list = h('ul', { class: 'thread-list', 'data-testid': 'thread-list', 'aria-label': 'Threads' });
  const more = h('button', { type: 'button', class: 'ghost wide', 'data-testid': 'load-more', text: 'Load more', hidden: true });
  const empty = h('p', { class: 'empty', 'data-testid': 'threads-empty', hidden: true },
    'No threads yet. ', h('a', { href: '#/chat', text: 'Start one' }), '.');
  const filterId = uid('status');
  const filter = h('select', { id: filterId, 'data-testid': 'status-filter' },
    h('option', { value: '', text: 'All' }),
    Object.entries(STATUS_LABELS).map(([value, label]) => h('option', { value, text: label })));

  container.append(h('section', { class: 'screen threads', 'data-testid': 'threads-view' },
    h('header', { class: 'screen-head' },
      h('div', { class: 'title-row' }, h('h1', { tabindex: '-1', text: 'Threads' })),
      h('div', { class: 'actions' },
        h('label', { class: 'inline-label', for: filterId, text: 'Status' }), filter,
        h('a', { class: 'button primary', href: '#/chat', 'data-testid': 'new-thread', text: 'New chat' }))),
    list, empty, more));

  document.title = 'Threads · Baton';
  more.addEventListener('click', () => load(false));
  filter.addEventListener('change', () => {
    status = filter.value;
    load(true);
  });
  load(true);

  async function load(fresh) {
    if (loading) return;
    loading = true;
    more.disabled = true;
    try {
      const page = await api.threads({ cursor: fresh ? null : cursor, status, limit: PAGE });
      if (destroyed) return;
      if (fresh) clear(list);
      for (const thread of page.threads) list.append(item(thread));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      empty.hidden = list.children.length > 0;
    } catch (e) {
      if (!destroyed) shell.error(e.message);
    } finally {
      loading = false;
      more.disabled = false;
    }
  }

  function item(thread) {
    const open = `#/chat/${encodeURIComponent(thread.thread_id)}`;
    const del = h('button', { type: 'button', class: 'danger ghost', 'data-testid': 'delete-thread', text: 'Delete' });
    const li = h('li', { class: 'thread-item', 'data-testid': 'thread-item', 'data-thread-id': thread.thread_id },
      h('div', { class: 'thread-main' },
        h('a', { class: 'thread-prompt', href: open, 'data-testid': 'open-thread', text: thread.prompt || '(no prompt)' }),
        h('div', { class: 'meta' },
          statusBadge(thread.status),
          h('code', { class: 'thread-id', text: thread.thread_id }),
          h('span', { text: `${thread.turns} turn${thread.turns === 1 ? '' : 's'}` }),
          h('span', {}, 'updated ', timeEl(thread.updated_at, ago(thread.updated_at)))),
        thread.question_for_user
          ? h('p', { class: 'waiting', 'data-testid': 'thread-question' }, h('span', { class: 'label', text: 'Asks' }), thread.question_for_user)
          : null),
      h('div', { class: 'thread-actions' },
        h('a', { class: 'button ghost', href: open, text: 'Open' }),
        h('a', { class: 'button ghost', href: `#/timeline/${encodeURIComponent(thread.thread_id)}`, 'data-testid': 'open-timeline', text: 'Timeline' }),
        del));
    del.addEventListener('click', async () => {
      del.disabled = true;
      try {
        await api.deleteThread(thread.thread_id);
        li.remove();
        empty.hidden = list.children.length > 0;
        shell.notice(`Deleted thread ${thread.thread_id}.`);
        list.querySelector('a')?.focus();
      } catch (e) {
        del.disabled = false;
        shell.error(e.message);
      }
    });
    return li;
  }

  return { destroy() { destroyed = true; } };
}

/** What a checkpoint written by each node stands for, when no event says more. */
const NODE_DOES = {
  start: 'A turn began',
  fork: 'Copied from another thread’s checkpoint',
  takeover: 'Another process took the run over',
  cancel: 'The run was cancelled',
  parse_prompt: 'Read the request into tasks',
  match_capabilities: 'Matched the tasks to capabilities',
  agent_directory_search: 'Found candidate agents in the directory',
  rank_agents: 'Ranked the candidates',
  plan_execution: 'Planned the calls in batches',
  execute_batch: 'Called a batch of agents',
  wait_for_user_input: 'Took the user’s answer',
  aggregate_responses: 'Composed the response',
};

/** What one event changed, in a few words. */
function change(kind, e) {
  switch (kind) {
    case 'run_started': return ['prompt', `New turn: “${e.prompt}”`];
    case 'answer_received': return ['answer', `Answer to ${e.question_id}: “${e.answer}”`];
    case 'task_started': return ['task', `${e.task_id} goes to ${e.agent_id}`];
    case 'task_finished':
      return ['task', e.outcome === 'ok'
        ? `${e.task_id} answered by ${e.agent_id}${e.latency_ms == null ? '' : ` in ${e.latency_ms} ms`}`
        : `${e.task_id} failed${e.agent_id ? ` (${e.agent_id})` : ': no agent could take it'}`];
    case 'question_asked':
      return ['question', `${e.asked_by === 'agent' ? `Agent ${e.agent_id}` : 'The planner'} asks (${e.question_id}): “${e.text}”`];
    case 'run_paused': return ['status', `Paused for ${e.question_ids.length} answer${e.question_ids.length === 1 ? '' : 's'}`];
    case 'run_finished': return ['status', 'Completed'];
    case 'run_failed': return ['status', `Failed: ${e.error ?? ''}`];
    case 'run_cancelled': return ['status', 'Cancelled'];
    default: return null;
  }
}

export function mountTimeline(container, { threadId }, shell) {
  let destroyed = false;
  let stream = null;
  let reloadTimer = null;
  /** version → list element of its changes. */
  const changes = new Map();
  /** version → changes told before its entry was drawn. */
  const early = new Map();
  const drawn = new Set();

  const list = h('ol', { class: 'timeline', 'data-testid': 'timeline', 'aria-label': 'Checkpoints, oldest first' });
  const head = h('p', { class: 'muted', 'data-testid': 'timeline-summary', text: 'Reading the history…' });
  container.append(h('section', { class: 'screen timeline-screen', 'data-testid': 'timeline-view' },
    h('header', { class: 'screen-head' },
      h('div', { class: 'title-row' }, h('h1', { tabindex: '-1', text: 'Timeline' }), h('code', { class: 'thread-id', 'data-testid': 'thread-id', text: threadId })),
      h('div', { class: 'actions' },
        h('a', { class: 'button ghost', href: `#/chat/${encodeURIComponent(threadId)}`, 'data-testid': 'open-chat', text: 'Open chat' }),
        h('a', { class: 'button ghost', href: '#/threads', text: 'All threads' }))),
    head,
    h('p', { class: 'hint', text: 'Every checkpoint the thread keeps, oldest first. Fork from one to try again from there: the fork is a new thread, and this one stays as it is.' }),
    list));
  document.title = `Timeline ${threadId} · Baton`;

  load().then((ok) => {
    if (!ok || destroyed) return;
    stream = followThread(threadId, {
      onEvent: (kind, e) => {
        const said = change(kind, e);
        if (said) addChange(e.version, said);
        if (e.version !== undefined && !drawn.has(e.version)) scheduleReload();
      },
    });
  });

  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 200);
  }

  async function load() {
    try {
      const history = await api.history(threadId);
      if (destroyed) return false;
      const entries = [...history].sort((a, b) => a.version - b.version);
      for (const entry of entries) {
        if (!drawn.has(entry.version)) {
          list.append(row(entry));
          drawn.add(entry.version);
        }
      }
      const last = entries[entries.length - 1];
      clear(head).append(`${entries.length} checkpoint${entries.length === 1 ? '' : 's'} kept; the latest is version ${last?.version ?? '—'} (`, STATUS_LABELS[last?.status] ?? last?.status ?? '', ').');
      return true;
    } catch (e) {
      if (destroyed) return false;
      head.textContent = e.status === 404 ? `There is no thread ${threadId}.` : 'The history could not be read.';
      shell.error(e.message);
      return false;
    }
  }

  function addChange(version, [kind, text]) {
    const ul = changes.get(version);
    if (!ul) {
      if (!early.has(version)) early.set(version, []);
      early.get(version).push([kind, text]);
      return;
    }
    ul.append(h('li', { class: `change change-${kind}`, 'data-testid': 'change', text }));
  }

  function row(entry) {
    const ul = h('ul', { class: 'changes', 'aria-label': `What changed at version ${entry.version}` },
      h('li', { class: 'no-change muted', text: NODE_DOES[entry.node] ?? 'The state moved on' }));
    changes.set(entry.version, ul);
    for (const said of early.get(entry.version) ?? []) addChange(entry.version, said);
    early.delete(entry.version);
    const fork = h('button', { type: 'button', class: 'ghost', 'data-testid': 'fork', text: 'Fork' });
    fork.setAttribute('aria-describedby', `cp-${entry.version}`);
    fork.addEventListener('click', async () => {
      fork.disabled = true;
      shell.clearError();
      try {
        const forked = await api.fork(threadId, entry.version);
        shell.notice(`Forked ${threadId} at version ${entry.version} as ${forked.thread_id}.`);
        shell.go(`#/chat/${encodeURIComponent(forked.thread_id)}`);
      } catch (e) {
        fork.disabled = false;
        shell.error(e.message);
      }
    });
    const origin = entry.forked_from
      ? h('p', { class: 'small' }, 'Forked from ', h('a', { href: `#/timeline/${encodeURIComponent(entry.forked_from.thread_id)}`, text: entry.forked_from.thread_id }), ` at version ${entry.forked_from.version}`)
      : null;
    return h('li', { class: 'checkpoint', 'data-testid': 'checkpoint', 'data-version': entry.version, 'data-node': entry.node },
      h('div', { class: 'cp-head' },
        h('span', { class: 'version', id: `cp-${entry.version}`, text: `v${entry.version}` }),
        h('span', { class: 'node', 'data-testid': 'checkpoint-node', text: entry.node }),
        h('span', { class: 'muted small', text: `→ ${entry.next}` }),
        statusBadge(entry.status),
        h('span', { class: 'spacer' }),
        fork),
      h('div', { class: 'cp-meta small muted' },
        timeEl(entry.created_at),
        h('span', {}, 'written by ', h('code', { 'data-testid': 'checkpoint-writer', title: 'The Baton process that wrote this checkpoint', text: entry.writer })),
        h('span', { text: `step ${entry.step}` })),
      origin,
      ul);
  }

  return {
    destroy() {
      destroyed = true;
      stream?.stop();
      clearTimeout(reloadTimer);
    },
  };
}
