// Building the page: elements from data, text always set as text (never parsed as HTML), and a
// small markdown renderer that builds DOM nodes, so agent text can never become markup or script.

/**
 * An element: `attrs` are attributes (`class`, `data-*`, `aria-*`, …), `on*` functions become
 * listeners, `text` sets the text; children are nodes, strings (as text) or arrays of them.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') {
      el.textContent = String(value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'style') {
      throw new Error('inline styles are refused by the page policy');
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends nodes, strings (as text nodes) and arrays of them; skips null and false. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Removes every child. */
export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let ids = 0;
/** A document-unique id, for labels and descriptions. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** The status of a thread as a badge. */
export function statusBadge(status, testid = 'status') {
  const label = STATUS_LABELS[status] ?? status ?? 'new';
  return h('span', { class: `badge status-${status ?? 'new'}`, 'data-testid': testid, 'data-status': status ?? 'new', text: label });
}

export const STATUS_LABELS = {
  processing: 'running',
  pending_user_input: 'waiting for you',
  completed: 'completed',
  error: 'failed',
  cancelled: 'cancelled',
};

/** Milliseconds since the epoch as local date and time, to the second. */
export function dateTime(ms) {
  const d = new Date(ms);
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** "just now", "5 min ago", "3 h ago", else the date. */
export function ago(ms) {
  const seconds = Math.round((Date.now() - ms) / 1000);
  if (seconds < 45) return 'just now';
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(ms).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

/** A time element for `ms`, its exact date in the title. */
export function timeEl(ms, text) {
  return h('time', { datetime: new Date(ms).toISOString(), title: dateTime(ms), text: text ?? dateTime(ms) });
}

/** The URL if it is an absolute http(s) one, else null: the only links the page makes. */
export function safeHref(raw) {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** A link that opens outside the console, with no access back to it. */
export function outsideLink(href, children) {
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow' }, children);
}

// ---- markdown ---------------------------------------------------------------------------------

const FENCE = /^\s*(```|~~~)/;
const HEADING = /^\s*(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s*>\s?(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
    || BULLET.test(line) || NUMBERED.test(line);
}

/**
 * Markdown as DOM nodes: headings, paragraphs (a single newline is a line break), lists, quotes,
 * fenced code, rules; inline code, bold, italic, links (http and https only) and bare URLs.
 * Anything else, HTML included, is shown as the text it is.
 */
export function markdown(source) {
  const root = h('div', { class: 'markdown' });
  const lines = String(source ?? '').replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    const fence = line.match(FENCE);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) { body.push(lines[i]); i += 1; }
      i += 1;
      root.append(h('pre', {}, h('code', { text: body.join('\n') })));
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      const level = Math.min(6, heading[1].length + 2);
      root.append(h(`h${level}`, {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (RULE.test(line)) { root.append(h('hr')); i += 1; continue; }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && QUOTE.test(lines[i])) { body.push(lines[i].match(QUOTE)[1]); i += 1; }
      const inner = markdown(body.join('\n'));
      root.append(h('blockquote', {}, [...inner.childNodes]));
      continue;
    }
    const bullet = BULLET.test(line);
    const numbered = NUMBERED.exec(line);
    if (bullet || numbered) {
      const pattern = bullet ? BULLET : NUMBERED;
      const list = bullet ? h('ul') : h('ol', numbered[1] !== '1' ? { start: Number(numbered[1]) } : {});
      while (i < lines.length && pattern.test(lines[i])) {
        const m = lines[i].match(pattern);
        const parts = [bullet ? m[1] : m[2]];
        i += 1;
        // Indented lines continue the item.
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !startsBlock(lines[i])) { parts.push(lines[i].trim()); i += 1; }
        list.append(h('li', {}, lineBreaks(parts)));
      }
      root.append(list);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && (para.length === 0 || !startsBlock(lines[i]))) {
      para.push(lines[i]);
      i += 1;
    }
    root.append(h('p', {}, lineBreaks(para)));
  }
  return root;
}

function lineBreaks(lines) {
  const out = [];
  lines.forEach((line, n) => {
    if (n > 0) out.push(h('br'));
    out.push(...inline(line));
  });
  return out;
}

const INLINE = new RegExp([
  '(`+)([^`]|[^`][\\s\\S]*?[^`])\\1(?!`)', // code: 1, 2
  '\\*\\*(\\S(?:[\\s\\S]*?\\S)?)\\*\\*', // bold: 3
  '__(\\S(?:[\\s\\S]*?\\S)?)__', // bold: 4
  '\\*(\\S(?:[^*]*?\\S)?)\\*', // italic: 5
  '\\[([^\\]]+)\\]\\(\\s*<?([^)\\s>]+)>?\\s*\\)', // link: 6, 7
  '(https?:\\/\\/[^\\s<>"\'`]*[^\\s<>"\'`.,;:!?)\\]])', // bare URL: 8
].join('|'));

/** Inline markdown of one line as nodes (`links`: false inside a link's own text). */
export function inline(text, links = true) {
  const out = [];
  let rest = String(text);
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) { out.push(document.createTextNode(rest)); break; }
    if (m.index > 0) out.push(document.createTextNode(rest.slice(0, m.index)));
    if (m[2] !== undefined) {
      out.push(h('code', { text: m[2] }));
    } else if (m[3] !== undefined || m[4] !== undefined) {
      out.push(h('strong', {}, inline(m[3] ?? m[4], links)));
    } else if (m[5] !== undefined) {
      out.push(h('em', {}, inline(m[5], links)));
    } else if (m[6] !== undefined) {
      const href = links ? safeHref(m[7]) : null;
      out.push(href ? outsideLink(href, inline(m[6], false)) : document.createTextNode(m[0]));
    } else if (m[8] !== undefined) {
      const href = links ? safeHref(m[8]) : null;
      out.push(href ? outsideLink(href, m[8]) : document.createTextNode(m[8]));
    }
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}
