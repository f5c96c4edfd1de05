// The agents screen (`#/agents`): the directory in ranking order, searched with the API's filters
// (words, capabilities, highest price, lowest rating), each card with its skills, rating, price
// and what Baton measured of its calls; register by URL (A2A discovery or an MCP server) or by
// pasting a card; rate; remove.

import { api } from './api.js';
import { h, clear, uid } from './dom.js';

const PAGE = 20;

function field(label, control, hint) {
  const id = control.id || uid('field');
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), control, hint ? h('p', { class: 'hint', text: hint }) : null);
}

function millis(ms) {
  return ms < 1 ? 'under 1 ms' : `${Math.round(ms)} ms`;
}

function percent(rate) {
  return `${Math.round(rate * 100)}%`;
}

export function mountAgents(container, _params, shell) {
  let destroyed = false;
  let cursor = null;
  let params = {};

  // ---- search ----
  const q = h('input', { type: 'search', name: 'q', 'data-testid': 'agent-search', autocomplete: 'off', placeholder: 'weather, translate, sales data…' });
  const capabilities = h('input', { type: 'text', name: 'capabilities', 'data-testid': 'agent-capabilities', placeholder: 'tags, comma-separated' });
  const maxPrice = h('input', { type: 'number', name: 'max_price', min: '0', step: 'any', inputmode: 'decimal', 'data-testid': 'agent-max-price' });
  const minRating = h('input', { type: 'number', name: 'min_rating', min: '0', max: '5', step: '0.1', inputmode: 'decimal', 'data-testid': 'agent-min-rating' });
  const searchButton = h('button', { type: 'submit', class: 'primary', 'data-testid': 'search-button', text: 'Search' });
  const searchForm = h('form', { class: 'search-form', role: 'search', 'aria-label': 'Find agents', 'data-testid': 'agent-search-form' },
    field('Search', q),
    h('div', { class: 'filters' },
      field('Capabilities', capabilities),
      field('Max price (USD per call)', maxPrice),
      field('Min rating', minRating)),
    h('div', { class: 'form-actions' }, searchButton,
      h('button', { type: 'reset', class: 'ghost', text: 'Clear' })));
  const count = h('p', { class: 'muted small', 'data-testid': 'agent-count', 'aria-live': 'polite' });
  const list = h('ul', { class: 'agent-list', 'data-testid': 'agent-list', 'aria-label': 'Agents' });
  const more = h('button', { type: 'button', class: 'ghost wide', 'data-testid': 'load-more', text: 'Load more', hidden: true });

  // ---- registering ----
  const how = uid('how');
  const byUrl = h('input', { type: 'radio', name: how, value: 'url', id: uid('by-url'), checked: true, 'data-testid': 'register-by-url' });
  const byCard = h('input', { type: 'radio', name: how, value: 'card', id: uid('by-card'), 'data-testid': 'register-by-card' });
  const url = h('input', { type: 'url', name: 'url', 'data-testid': 'agent-url', placeholder: 'http://127.0.0.1:9000/translation', autocomplete: 'off' });
  const protocol = h('select', { name: 'protocol', 'data-testid': 'agent-protocol' },
    h('option', { value: 'a2a', text: 'A2A (reads its agent card)' }),
    h('option', { value: 'mcp', text: 'MCP server (its tools become skills)' }));
  const mcpName = h('input', { type: 'text', name: 'name', 'data-testid': 'agent-mcp-name', placeholder: 'the server’s own name' });
  const mcpField = field('Name (MCP only)', mcpName);
  mcpField.hidden = true;
  const cardJson = h('textarea', { name: 'card', rows: 8, spellcheck: 'false', 'data-testid': 'agent-card-json', class: 'mono', placeholder: '{"name": "…", "description": "…", "url": "…", "skills": […]}' });
  const urlFields = h('div', { class: 'url-fields' },
    field('Agent URL', url, 'An A2A agent’s base URL (its card is read from /.well-known/agent-card.json there) or an MCP server’s endpoint.'),
    field('Protocol', protocol), mcpField);
  const cardFields = h('div', { class: 'card-fields', hidden: true },
    field('Card JSON', cardJson, 'An A2A Agent Card, or a card of the original system (id, name, endpoints, …).'));
  const registerButton = h('button', { type: 'submit', class: 'primary', 'data-testid': 'register-button', text: 'Register' });
  const registerForm = h('form', { class: 'register-form', 'data-testid': 'register-form', 'aria-labelledby': 'register-title' },
    h('fieldset', { class: 'segmented' },
      h('legend', { text: 'Register by' }),
      h('div', { class: 'segments' },
        h('span', {}, byUrl, h('label', { for: byUrl.id, text: 'URL' })),
        h('span', {}, byCard, h('label', { for: byCard.id, text: 'Pasted card' })))),
    urlFields, cardFields,
    h('div', { class: 'form-actions' }, registerButton));

  container.append(h('section', { class: 'screen agents', 'data-testid': 'agents-view' },
    h('header', { class: 'screen-head' },
      h('div', { class: 'title-row' }, h('h1', { tabindex: '-1', text: 'Agents' })),
      h('p', { class: 'muted', text: 'The directory Baton picks agents from, best ranked first.' })),
    h('div', { class: 'agents-layout' },
      h('div', { class: 'agents-main' }, searchForm, count, list, more),
      h('aside', { class: 'panel register', 'data-testid': 'register' },
        h('h2', { id: 'register-title', text: 'Register an agent' }), registerForm))));
  document.title = 'Agents · Baton';

  for (const radio of [byUrl, byCard]) {
    radio.addEventListener('change', () => {
      const card = byCard.checked;
      urlFields.hidden = card;
      cardFields.hidden = !card;
    });
  }
  protocol.addEventListener('change', () => { mcpField.hidden = protocol.value !== 'mcp'; });
  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    search();
  });
  searchForm.querySelector('[type="reset"]').addEventListener('click', () => setTimeout(search, 0));
  more.addEventListener('click', () => load(false));
  registerForm.addEventListener('submit', (e) => {
    e.preventDefault();
    register();
  });

  search();

  function search() {
    params = {
      q: q.value.trim(),
      capabilities: capabilities.value.trim(),
      max_price: maxPrice.value.trim(),
      min_rating: minRating.value.trim(),
    };
    load(true);
  }

  async function load(fresh) {
    searchButton.disabled = true;
    more.disabled = true;
    try {
      const page = await api.search({ ...params, limit: PAGE, cursor: fresh ? undefined : cursor });
      if (destroyed) return;
      if (fresh) clear(list);
      for (const hit of page.hits) list.append(card(hit));
      cursor = page.next;
      more.hidden = !cursor;
      const shown = list.children.length;
      const filtered = Object.values(params).some(Boolean);
      count.textContent = shown === 0
        ? (filtered ? 'No agent matches.' : 'The directory is empty.')
        : `${shown}${cursor ? '+' : ''} agent${shown === 1 ? '' : 's'}${filtered ? ' match' : ''}${params.q ? ', most relevant first' : ', best ranked first'}.`;
    } catch (e) {
      if (!destroyed) shell.error(e.message);
    } finally {
      searchButton.disabled = false;
      more.disabled = false;
    }
  }

  function card(hit) {
    const agent = hit.agent;
    const health = hit.health ?? { calls: 0 };
    const rating = h('dd', { 'data-testid': 'agent-rating' });
    const drawRating = (a) => {
      rating.textContent = a.rating_count > 0 || a.rating > 0
        ? `★ ${Number(a.rating).toFixed(1)}${a.rating_count ? ` (${a.rating_count} rating${a.rating_count === 1 ? '' : 's'})` : ''}`
        : 'not rated';
    };
    drawRating(agent);
    const measured = health.calls > 0;
    const score = h('select', { 'data-testid': 'rating-select' },
      [5, 4, 3, 2, 1, 0].map((n) => h('option', { value: String(n), text: `${n} ★` })));
    const scoreField = field('Your rating', score);
    const rate = h('button', { type: 'submit', class: 'ghost', 'data-testid': 'rate-button', text: 'Rate' });
    const rateForm = h('form', { class: 'rate-form', 'aria-label': `Rate ${agent.name}` }, scoreField, rate);
    const remove = h('button', { type: 'button', class: 'danger ghost', 'data-testid': 'remove-agent', text: 'Remove' });
    const li = h('li', { class: 'agent-card', 'data-testid': 'agent-card', 'data-agent-id': agent.id },
      h('header', {},
        h('h3', { text: agent.name }),
        h('code', { class: 'agent-id', text: agent.id }),
        h('span', { class: 'chip protocol', 'data-testid': 'agent-protocol-chip', text: agent.protocol })),
      h('p', { class: 'description', text: agent.description }),
      h('dl', { class: 'facts' },
        h('div', {}, h('dt', { text: 'Rating' }), rating),
        h('div', {}, h('dt', { text: 'Price' }), h('dd', { 'data-testid': 'agent-price', text: agent.price_per_call_usd > 0 ? `$${agent.price_per_call_usd} per call` : 'free' })),
        h('div', {}, h('dt', { text: 'Success rate' }), h('dd', { 'data-testid': 'agent-success', title: measured ? 'Measured over this Baton process’s calls, recent calls weighing most' : 'Not called by this Baton process yet', text: measured ? percent(health.success_rate) : '—' })),
        h('div', {}, h('dt', { text: 'Latency' }), h('dd', { 'data-testid': 'agent-latency', title: measured ? 'Measured over this Baton process’s calls, recent calls weighing most' : 'Not called by this Baton process yet', text: measured ? millis(health.latency_ms) : '—' })),
        h('div', {}, h('dt', { text: 'Calls' }), h('dd', { 'data-testid': 'agent-calls', text: String(health.calls ?? 0) })),
        params.q ? h('div', {}, h('dt', { text: 'Relevance' }), h('dd', { text: Number(hit.relevance).toFixed(2) })) : null),
      h('p', { class: 'url small' }, h('span', { class: 'label', text: 'URL' }), h('code', { text: agent.url })),
      h('div', { class: 'skills' },
        h('span', { class: 'label', text: agent.skills.length === 1 ? 'Skill' : `${agent.skills.length} skills` }),
        h('ul', { 'data-testid': 'agent-skills' }, agent.skills.map((skill) => h('li', { class: 'skill', 'data-testid': 'agent-skill' },
          h('strong', { text: skill.name }), skill.description ? h('span', { class: 'muted', text: ` — ${skill.description}` }) : '',
          skill.tags?.length ? h('div', { class: 'tags' }, skill.tags.map((t) => h('span', { class: 'chip', text: t }))) : null)))),
      h('div', { class: 'card-actions' }, rateForm, remove));
    rateForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      rate.disabled = true;
      try {
        const updated = await api.rate(agent.id, Number(score.value));
        drawRating(updated);
        shell.notice(`Rated ${updated.name} ${score.value} ★; its mean is now ${Number(updated.rating).toFixed(1)}.`);
      } catch (err) {
        shell.error(err.message);
      } finally {
        rate.disabled = false;
      }
    });
    remove.addEventListener('click', async () => {
      remove.disabled = true;
      try {
        await api.removeAgent(agent.id);
        li.remove();
        shell.notice(`Removed ${agent.name} (${agent.id}).`);
        list.querySelector('button, a')?.focus();
      } catch (err) {
        remove.disabled = false;
        shell.error(err.message);
      }
    });
    return li;
  }

  async function register() {
    shell.clearError();
    let action;
    if (byCard.checked) {
      let parsed;
      try {
        parsed = JSON.parse(cardJson.value);
      } catch (e) {
        shell.error(`The card is not JSON: ${e.message}`);
        cardJson.focus();
        return;
      }
      action = () => api.register(parsed);
    } else {
      const target = url.value.trim();
      if (!target) {
        shell.error('Give the agent’s URL.');
        url.focus();
        return;
      }
      const body = { url: target, protocol: protocol.value };
      if (protocol.value === 'mcp' && mcpName.value.trim()) body.name = mcpName.value.trim();
      action = () => api.discover(body);
    }
    registerButton.disabled = true;
    try {
      const stored = await action();
      if (destroyed) return;
      shell.notice(`Registered ${stored.name} (${stored.id}).`);
      url.value = '';
      cardJson.value = '';
      mcpName.value = '';
      searchForm.reset();
      // The whole directory again, the new card first whatever its rank.
      params = {};
      await load(true);
      for (const el of [...list.children]) if (el.dataset.agentId === stored.id) el.remove();
      const fresh = card({ agent: stored, relevance: 0, health: { calls: 0, success_rate: 1, latency_ms: 0 } });
      fresh.classList.add('just-registered');
      list.prepend(fresh);
    } catch (e) {
      if (!destroyed) shell.error(e.message);
    } finally {
      registerButton.disabled = false;
    }
  }

  return { destroy() { destroyed = true; } };
}
