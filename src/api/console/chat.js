// The chat screen (`#/chat`, `#/chat/THREAD`): the conversation as the thread's event stream
// tells it (prompts, each node and task as it finishes, questions with their answer boxes, the
// final response as markdown), and the thread as it stands (status, pending questions, tasks with
// their agents and fallbacks) from `GET /api/chat/status`. The thread id is in the URL, so a
// reload or a second tab shows the same thread.

import { api, followThread } from './api.js';
import { h, clear, uid, statusBadge, markdown } from './dom.js';

const STEP_NAMES = {
  start: 'Started the turn',
  parse_prompt: 'Read the request',
  match_capabilities: 'Matched capabilities',
  agent_directory_search: 'Searched the directory',
  rank_agents: 'Ranked agents',
  plan_execution: 'Planned the calls',
  execute_batch: 'Called agents',
  wait_for_user_input: 'Took the answer',
  aggregate_responses: 'Composed the response',
  takeover: 'Another process took the run over',
  cancel: 'Cancelled',
  fork: 'Forked',
};

const EXAMPLES = [
  'Help me analyze data but I need guidance',
  'What is the weather in Oslo and the latest news about robotics',
  'Translate my notes into French and translate my letter into German',
];

/** A new thread's id: the client names it, so it can follow the run from its first step. */
function newThreadId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  const rand = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `chat-${Date.now().toString(36)}-${rand}`;
}

export function mountChat(container, { threadId }, shell) {
  const s = {
    threadId,
    status: null,
    /** agent id → name, from the cards the thread was shown. */
    agentNames: new Map(),
    /** task id → { name, description }. */
    taskNames: new Map(),
    /** The current turn's questions: id → { el, slot, answered }. */
    questions: new Map(),
    /** The current turn's task lines: task id → { el, label, state }. */
    taskLines: new Map(),
    /** Question ids the thread waits on, as last read. */
    pending: new Map(),
    activity: null,
    stream: null,
    refreshTimer: null,
    fallbackTimer: null,
    destroyed: false,
    sending: false,
  };

  // ---- the frame ----
  const title = h('h1', { tabindex: '-1', text: 'Chat' });
  const idLabel = h('code', { class: 'thread-id', 'data-testid': 'thread-id' });
  const badgeSlot = h('span', { class: 'badge-slot' });
  const timelineLink = h('a', { class: 'button ghost', 'data-testid': 'timeline-link', text: 'Timeline', hidden: true });
  const newLink = h('a', { class: 'button ghost', href: '#/chat', 'data-testid': 'new-chat', text: 'New chat' });
  const conversation = h('div', {
    class: 'conversation', 'data-testid': 'conversation', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation',
  });
  const pairsList = h('div', { class: 'pairs-list', 'data-testid': 'task-agent-pairs' });
  const pairsPanel = h('aside', { class: 'panel pairs', 'aria-labelledby': 'pairs-title' },
    h('h2', { id: 'pairs-title', text: 'Tasks and agents' }), pairsList);
  const messageId = uid('message');
  const hintId = uid('hint');
  const message = h('textarea', {
    id: messageId, name: 'message', rows: 3, 'data-testid': 'message-input', 'aria-describedby': hintId,
    placeholder: 'Ask for something, for example: What is the weather in Oslo',
  });
  const sendButton = h('button', { type: 'submit', class: 'primary', 'data-testid': 'send', text: 'Send' });
  const hint = h('p', { id: hintId, class: 'hint', 'data-testid': 'composer-hint' });
  const composer = h('form', { class: 'composer', 'data-testid': 'composer' },
    h('label', { for: messageId, text: 'Message' }),
    message,
    h('div', { class: 'composer-row' }, hint, sendButton));

  container.append(h('section', { class: 'screen chat', 'data-testid': 'chat-view' },
    h('header', { class: 'screen-head' },
      h('div', { class: 'title-row' }, title, idLabel, badgeSlot),
      h('div', { class: 'actions' }, timelineLink, newLink)),
    h('div', { class: 'chat-layout' },
      h('div', { class: 'chat-main' }, conversation, composer),
      pairsPanel)));

  message.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });

  showHeader();
  renderPairs([]);
  if (threadId) {
    load();
  } else {
    conversation.append(welcome());
    setComposer();
    message.focus();
  }

  // ---- loading and following ----

  async function load() {
    setComposer();
    try {
      const state = await api.status(s.threadId);
      if (s.destroyed) return;
      applyState(state);
      follow(false);
    } catch (e) {
      if (s.destroyed) return;
      conversation.append(h('p', { class: 'empty', 'data-testid': 'missing-thread', text: e.status === 404 ? `There is no thread ${s.threadId}. It may have been deleted.` : 'The thread could not be read.' }));
      shell.error(e.message);
      message.disabled = true;
      sendButton.disabled = true;
    }
  }

  function follow(wait) {
    s.stream?.stop();
    s.stream = followThread(s.threadId, {
      wait,
      onEvent,
      onTrouble: (why) => { if (why) hintTrouble(why); else setComposer(); },
      onGone: () => {
        if (s.destroyed) return;
        shell.error(`Thread ${s.threadId} no longer exists.`);
        setStatus(null);
        message.disabled = true;
        sendButton.disabled = true;
      },
    });
  }

  function hintTrouble(why) {
    hint.textContent = why;
    hint.classList.add('trouble');
  }

  function scheduleRefresh() {
    clearTimeout(s.refreshTimer);
    s.refreshTimer = setTimeout(refresh, 120);
  }

  async function refresh() {
    if (!s.threadId || s.destroyed) return;
    try {
      applyState(await api.status(s.threadId));
    } catch (e) {
      if (!s.destroyed && e.status !== 404) shell.error(e.message);
    }
  }

  // ---- sending ----

  async function send() {
    const prompt = message.value;
    if (!prompt.trim()) {
      shell.error('Write a message before sending.');
      message.focus();
      return;
    }
    if (s.sending) return;
    const fresh = !s.threadId;
    if (fresh) {
      s.threadId = newThreadId();
      history.replaceState(null, '', `#/chat/${encodeURIComponent(s.threadId)}`);
      clear(conversation);
      showHeader();
      follow(true);
    }
    s.sending = true;
    shell.clearError();
    setStatus('processing');
    message.value = '';
    try {
      const reply = await api.start({ prompt, thread_id: s.threadId });
      if (!s.destroyed) applyState(reply);
    } catch (e) {
      if (s.destroyed) return;
      message.value = prompt;
      shell.error(e.message);
      if (fresh && e.status >= 400 && e.status < 500) {
        // Refused before the thread existed: back to a new chat.
        s.stream?.stop();
        s.threadId = null;
        history.replaceState(null, '', '#/chat');
        clear(conversation).append(welcome());
        showHeader();
        setStatus(null);
      } else {
        scheduleRefresh();
      }
    } finally {
      s.sending = false;
      if (!s.destroyed) setComposer();
    }
  }

  async function answer(questionId, input, button) {
    const response = input.value;
    if (!response.trim()) {
      shell.error('Write an answer first.');
      input.focus();
      return;
    }
    input.disabled = true;
    button.disabled = true;
    shell.clearError();
    try {
      const reply = await api.answer({ thread_id: s.threadId, response, question_id: questionId });
      markAnswered(questionId, response);
      if (!s.destroyed) applyState(reply);
    } catch (e) {
      if (s.destroyed) return;
      input.disabled = false;
      button.disabled = false;
      shell.error(e.message);
      input.focus();
      scheduleRefresh();
    }
  }

  // ---- the thread as it stands ----

  function applyState(state) {
    if (s.destroyed || !state) return;
    setStatus(state.status);
    for (const pair of state.task_agent_pairs ?? []) {
      s.taskNames.set(pair.task_id, { name: pair.task_name, description: pair.task_description });
      for (const card of [pair.primary, ...(pair.fallbacks ?? [])]) s.agentNames.set(card.id, card.name);
    }
    renderPairs(state.task_agent_pairs ?? []);
    s.pending = new Map((state.pending_questions ?? []).map((q) => [q.question_id, q]));
    // Forms only where the thread still waits; a question it waits on but the stream has not
    // told yet gets its block if the stream stays silent.
    for (const [id, q] of s.questions) {
      if (!s.pending.has(id) && !q.answered) closeQuestion(q);
      else if (s.pending.has(id) && !q.answered) openQuestion(id, q);
    }
    clearTimeout(s.fallbackTimer);
    if ([...s.pending.keys()].some((id) => !s.questions.has(id))) {
      s.fallbackTimer = setTimeout(() => {
        for (const [id, q] of s.pending) {
          if (!s.questions.has(id)) questionBlock({ question_id: id, text: q.question, asked_by: q.asked_by, agent_id: q.agent_id });
        }
      }, 1500);
    }
    relabelTasks();
    setComposer();
  }

  function setStatus(status) {
    s.status = status;
    clear(badgeSlot);
    if (s.threadId) badgeSlot.append(statusBadge(status, 'thread-status'));
  }

  function setComposer() {
    hint.classList.remove('trouble');
    const waiting = s.status === 'pending_user_input';
    const running = s.status === 'processing' || s.sending;
    message.disabled = waiting || running;
    sendButton.disabled = waiting || running;
    if (!message.disabled && focusIsLost()) message.focus({ preventScroll: true });
    if (waiting) hint.textContent = s.pending.size > 1 ? 'Answer the questions above to go on.' : 'Answer the question above to go on.';
    else if (running) hint.textContent = 'Working on it…';
    else if (s.threadId && s.status) hint.textContent = 'A new message is a new turn of this thread, with the earlier turns as context.';
    else hint.textContent = 'Enter sends; Shift+Enter starts a new line.';
  }

  function showHeader() {
    idLabel.textContent = s.threadId ?? 'new thread';
    title.textContent = s.threadId ? 'Chat' : 'New chat';
    if (s.threadId) {
      timelineLink.href = `#/timeline/${encodeURIComponent(s.threadId)}`;
      timelineLink.hidden = false;
    } else {
      timelineLink.hidden = true;
    }
    document.title = s.threadId ? `Chat ${s.threadId} · Baton` : 'New chat · Baton';
  }

  function agentLabel(id) {
    if (!id) return 'no agent';
    const name = s.agentNames.get(id);
    return name && name !== id ? `${name} (${id})` : id;
  }

  function renderPairs(pairs) {
    clear(pairsList);
    if (!pairs.length) {
      pairsList.append(h('p', { class: 'empty small', text: s.threadId ? 'No task has an agent yet.' : 'Each task of your request shows here with the agent chosen for it and its fallbacks.' }));
      return;
    }
    for (const pair of pairs) {
      const fallbacks = pair.fallbacks ?? [];
      pairsList.append(h('article', { class: 'pair', 'data-testid': 'task-pair', 'data-task-id': pair.task_id },
        h('h3', {}, h('span', { class: 'task-id', text: pair.task_id }), ' ', pair.task_name),
        h('p', { class: 'muted small', text: pair.task_description }),
        h('p', { class: 'agent-line' },
          h('span', { class: 'label', text: 'Agent' }),
          h('span', { 'data-testid': 'primary-agent', text: agentLabel(pair.primary.id) }),
          h('span', { class: `chip protocol`, text: pair.primary.protocol ?? '' })),
        h('p', { class: 'agent-line', 'data-testid': 'fallbacks' },
          h('span', { class: 'label', text: 'Fallbacks' }),
          fallbacks.length ? fallbacks.map((c, n) => [n ? ', ' : '', agentLabel(c.id)]) : h('span', { class: 'muted', text: 'none' }))));
    }
  }

  // ---- the conversation, from the events ----

  function onEvent(kind, e) {
    if (s.destroyed) return;
    switch (kind) {
      case 'snapshot':
        snapshot(e);
        break;
      case 'node_finished':
        step(e);
        break;
      case 'run_started':
        newTurn(e);
        break;
      case 'answer_received':
        answered(e);
        break;
      case 'task_started':
        taskLine(e.task_id, { agent: e.agent_id, state: 'working' });
        break;
      case 'task_finished':
        taskLine(e.task_id, { agent: e.agent_id, state: e.outcome === 'ok' ? 'done' : 'failed', latency: e.latency_ms });
        break;
      case 'question_asked':
        questionBlock(e);
        if (e.task_id && e.asked_by === 'agent') taskLine(e.task_id, { agent: e.agent_id, state: 'asking' });
        break;
      case 'run_paused':
        closeActivity('Waiting for your answer');
        break;
      case 'run_finished':
        closeActivity('Done');
        say(h('div', { class: 'message assistant', 'data-testid': 'final-response' },
          h('div', { class: 'who', text: 'Baton' }),
          markdown(e.final_response ?? '(no response)')));
        break;
      case 'run_failed':
        closeActivity('Failed');
        say(h('div', { class: 'message failure', 'data-testid': 'run-error' },
          h('div', { class: 'who', text: 'The run failed' }),
          h('p', { text: e.error ?? 'No reason was given.' })));
        break;
      case 'run_cancelled':
        closeActivity('Cancelled');
        say(h('p', { class: 'note', 'data-testid': 'run-cancelled', text: 'The run was cancelled.' }));
        break;
      case 'progress':
        progressNote(e);
        break;
      default:
        return;
    }
    scheduleRefresh();
  }

  function say(node) {
    const stick = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;
    conversation.append(node);
    if (stick) conversation.scrollTop = conversation.scrollHeight;
    return node;
  }

  function snapshot(e) {
    // The history no longer keeps the thread's first checkpoints: where it stands, without them.
    clear(conversation);
    s.questions.clear();
    s.taskLines.clear();
    s.activity = null;
    say(h('p', { class: 'note', text: 'The earlier steps of this thread are no longer kept; this is where it stands.' }));
    for (const q of e.pending_questions ?? []) {
      questionBlock({ question_id: q.question_id, text: q.question, asked_by: q.asked_by, agent_id: q.agent_id });
    }
    if (e.status === 'completed' && e.final_response) {
      say(h('div', { class: 'message assistant', 'data-testid': 'final-response' }, h('div', { class: 'who', text: 'Baton' }), markdown(e.final_response)));
    }
    if (e.status === 'error') {
      say(h('div', { class: 'message failure', 'data-testid': 'run-error' }, h('div', { class: 'who', text: 'The run failed' }), h('p', { text: e.error_message ?? '' })));
    }
  }

  function newTurn(e) {
    s.questions = new Map();
    s.taskLines = new Map();
    s.activity = null;
    say(h('div', { class: 'message user', 'data-testid': 'user-message' },
      h('div', { class: 'who', text: 'You' }),
      h('p', { class: 'plain', text: e.prompt })));
  }

  function activity() {
    if (s.activity) return s.activity;
    const steps = h('ol', { class: 'steps' });
    const tasks = h('ul', { class: 'tasks' });
    const summary = h('summary', { text: 'Working…' });
    const details = h('details', { open: true }, summary, steps);
    const el = h('div', { class: 'activity running', 'data-testid': 'activity' }, details, tasks);
    say(el);
    s.activity = { el, steps, tasks, summary, details, count: 0 };
    return s.activity;
  }

  function closeActivity(how) {
    const a = s.activity;
    if (!a) return;
    a.el.classList.remove('running');
    a.summary.textContent = `${how} · ${a.count} step${a.count === 1 ? '' : 's'}`;
    a.details.open = false;
    s.activity = null;
  }

  function step(e) {
    if (e.node === 'start') return;
    if (e.node === 'fork') {
      forkNote();
      return;
    }
    const a = activity();
    a.count += 1;
    a.summary.textContent = `Working… ${a.count} step${a.count === 1 ? '' : 's'}`;
    const friendly = STEP_NAMES[e.node] ?? e.node;
    a.steps.append(h('li', { 'data-testid': 'activity-node', 'data-node': e.node },
      h('span', { text: friendly }), ' ', h('code', { class: 'muted', text: e.node })));
  }

  async function forkNote() {
    const note = say(h('p', { class: 'note', 'data-testid': 'fork-note', text: 'This thread is a fork.' }));
    try {
      const history = await api.history(s.threadId);
      const entry = history.find((x) => x.forked_from);
      if (entry && !s.destroyed) {
        const from = entry.forked_from;
        clear(note).append('Forked from ',
          h('a', { href: `#/chat/${encodeURIComponent(from.thread_id)}`, text: from.thread_id }),
          ` at version ${from.version}.`);
      }
    } catch {
      // The note stays as it is.
    }
  }

  function taskText(taskId) {
    const task = s.taskNames.get(taskId);
    return task ? `${taskId} · ${task.name}` : taskId;
  }

  function taskLine(taskId, { agent, state, latency }) {
    let line = s.taskLines.get(taskId);
    if (!line) {
      const label = h('span', { class: 'task-label' });
      const what = h('span', { class: 'task-state' });
      const el = h('li', { class: 'task-line', 'data-testid': 'task-progress', 'data-task-id': taskId }, label, what);
      activity().tasks.append(el);
      line = { el, label, what, agent: null, state: null, latency: null };
      s.taskLines.set(taskId, line);
    }
    if (agent) line.agent = agent;
    line.state = state;
    line.latency = latency ?? line.latency;
    line.el.dataset.state = state;
    drawTask(taskId, line);
  }

  function drawTask(taskId, line) {
    line.label.textContent = taskText(taskId);
    const who = line.agent ? agentLabel(line.agent) : null;
    const ms = line.latency === null || line.latency === undefined ? '' : ` in ${line.latency} ms`;
    line.what.textContent = {
      working: `calling ${who ?? 'an agent'}…`,
      asking: `${who} asks you a question`,
      done: `answered by ${who}${ms}`,
      failed: who ? `failed (last tried ${who}${ms})` : 'failed: no agent could take it',
    }[line.state] ?? line.state;
  }

  function relabelTasks() {
    for (const [taskId, line] of s.taskLines) drawTask(taskId, line);
    for (const q of s.questions.values()) q.drawAsker?.();
  }

  function progressNote(e) {
    activity().tasks.append(h('li', { class: 'progress-note', 'data-testid': 'progress-note' },
      h('span', { class: 'task-label', text: `${agentLabel(e.agent_id)} says` }), h('span', { text: e.text })));
  }

  function askerText(e) {
    return e.asked_by === 'agent' ? `Agent ${agentLabel(e.agent_id)} asks` : (e.asked_by === 'planner' ? 'Baton’s planner asks' : 'Question');
  }

  function questionBlock(e) {
    const id = e.question_id;
    if (s.questions.has(id)) return s.questions.get(id);
    const asker = h('div', { class: 'who', 'data-testid': 'question-asker' });
    const textId = uid('question');
    const slot = h('div', { class: 'slot' });
    const el = h('div', {
      class: 'message question', 'data-testid': 'question', 'data-question-id': id, 'data-asked-by': e.asked_by ?? 'unknown',
    }, asker, h('p', { id: textId, class: 'plain', 'data-testid': 'question-text', text: e.text ?? e.question }), slot);
    if (e.agent_id) el.dataset.agentId = e.agent_id;
    const q = { el, slot, textId, answered: false, form: null };
    q.drawAsker = () => { asker.textContent = askerText(e); };
    q.drawAsker();
    s.questions.set(id, q);
    say(el);
    // Just asked: open unless the thread is known not to wait on it.
    if (!s.status || s.status !== 'pending_user_input' || s.pending.has(id)) openQuestion(id, q);
    return q;
  }

  function openQuestion(id, q) {
    if (q.form || q.answered) return;
    const inputId = uid('answer');
    const input = h('input', { id: inputId, type: 'text', name: 'answer', autocomplete: 'off', 'data-testid': 'answer-input', 'aria-describedby': q.textId });
    const button = h('button', { type: 'submit', class: 'primary', 'data-testid': 'answer-button', text: 'Answer' });
    const form = h('form', { class: 'answer-form', 'data-testid': 'answer-form' },
      h('label', { for: inputId, text: 'Answer' }), h('div', { class: 'inline-row' }, input, button));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      answer(id, input, button);
    });
    q.form = form;
    clear(q.slot).append(form);
    q.el.classList.add('open');
    if (focusIsLost()) input.focus({ preventScroll: true });
  }

  /** Whether the keyboard focus is nowhere useful (the page, a control just disabled or gone). */
  function focusIsLost() {
    const active = document.activeElement;
    return !active || active === document.body || active === message || active.disabled || !active.isConnected;
  }

  /** After an answer: the next open answer box, else the message box once it is usable. */
  function moveFocusOn() {
    if (!focusIsLost()) return;
    const next = conversation.querySelector('[data-testid="answer-input"]:not(:disabled)');
    if (next) next.focus({ preventScroll: true });
    else if (!message.disabled) message.focus({ preventScroll: true });
  }

  function closeQuestion(q) {
    if (!q.form) return;
    q.form.remove();
    q.form = null;
    q.el.classList.remove('open');
    if (!q.slot.firstChild) q.slot.append(h('p', { class: 'muted small', text: 'No longer waiting for an answer.' }));
  }

  function markAnswered(id, text) {
    const q = s.questions.get(id);
    if (!q || q.answered) return;
    q.answered = true;
    q.form = null;
    q.el.classList.remove('open');
    q.el.classList.add('answered');
    clear(q.slot).append(h('div', { class: 'answer', 'data-testid': 'answer' },
      h('span', { class: 'who', text: 'You answered' }), h('p', { class: 'plain', text })));
    moveFocusOn();
  }

  function answered(e) {
    if (!s.questions.has(e.question_id)) {
      questionBlock({ question_id: e.question_id, text: e.question, asked_by: e.asked_by, agent_id: e.agent_id });
    }
    markAnswered(e.question_id, e.answer ?? '');
  }

  function welcome() {
    return h('div', { class: 'welcome', 'data-testid': 'welcome' },
      h('h2', { text: 'What can Baton do for you?' }),
      h('p', { class: 'muted', text: 'Baton splits your request into tasks, finds an agent for each in its directory, and asks you when something only you know is missing. You watch every step here.' }),
      h('div', { class: 'examples' },
        h('span', { class: 'label', text: 'Try' }),
        EXAMPLES.map((text) => h('button', {
          type: 'button', class: 'chip-button', 'data-testid': 'example',
          onclick: () => { message.value = text; message.focus(); },
        }, text))));
  }

  return {
    destroy() {
      s.destroyed = true;
      s.stream?.stop();
      clearTimeout(s.refreshTimer);
      clearTimeout(s.fallbackTimer);
    },
  };
}

