// arena.js: the arena page (/): anonymous battles, named side-by-side and
// direct chat, over the API in docs/api.md.
//
// State lives in `st`; the DOM is updated from events. Each side's answer is
// kept as raw text and re-rendered through renderMarkdown() at most once a
// frame while tokens stream in, so the two panes advance independently.
import { $, el, api, errorFrom, describeError, initTheme, ApiError } from './common.js';

// The Markdown renderer (most of the page's bytes) loads as a second chunk
// right after the page is wired, so the page takes input before it has
// parsed it; until it arrives an answer shows as plain text.
let renderMarkdown = null;
const markdownReady = import('./markdown.js').then((m) => {
  renderMarkdown = m.renderMarkdown;
  for (const s of answers) touch(s);
  return renderMarkdown;
});
import { streamEvents } from './sse.js';

const st = {
  mode: 'anonymous',
  battle: null,     // {id, mode, max_turns, models, state}
  turns: 0,
  streaming: false,
  voted: false,
  ctrl: null,       // AbortController of the stream in flight
  sides: {},        // side -> {el, text, done, failed, tokens}
  models: null,     // GET /api/models cache
};

const ui = {
  app: $('#app'), notice: $('#notice'), panes: $('#panes'),
  votes: $('#votes'), form: $('#form'), prompt: $('#prompt'),
  send: $('#send'), regen: $('#regen'), newb: $('#new'), turns: $('#turns'),
  pickers: $('#pickers'), pickA: $('#model-a'), pickB: $('#model-b'),
  labelA: $('#label-a'), labelB: $('#label-b'), intro: $('#intro'),
};

const pane = (side) => $(`.pane[data-side="${side}"]`);
const activeSides = () => (st.mode === 'direct' ? ['a'] : ['a', 'b']);

function notify(text, kind = '') {
  ui.notice.className = 'notice' + (kind ? ' ' + kind : '');
  ui.notice.textContent = text || '';
}

// --- rendering -------------------------------------------------------------

// Every answer on screen (for the re-render once Markdown arrives).
const answers = new Set();

// Answers whose text changed since the last frame (kept here rather than
// looked up in st.sides, which a next turn may already have replaced).
const dirty = new Set();
let frameQueued = false;
function touch(s) {
  dirty.add(s);
  if (frameQueued) return;
  frameQueued = true;
  requestAnimationFrame(() => {
    frameQueued = false;
    for (const d of dirty) {
      if (renderMarkdown) {
        d.body.removeAttribute('data-plain');
        d.body.innerHTML = renderMarkdown(d.text);
      } else {
        d.body.setAttribute('data-plain', '');
        d.body.textContent = d.text;
      }
    }
    dirty.clear();
  });
}

function setHeaders() {
  for (const side of ['a', 'b']) {
    const h = pane(side).querySelector('h2');
    const who = h.querySelector('.who');
    const label = h.querySelector('.side');
    const m = st.battle && st.battle.models;
    if (st.mode === 'direct') label.textContent = 'Assistant';
    else label.textContent = side === 'a' ? 'Model A' : 'Model B';
    who.textContent = '';
    if (m) {
      const info = Array.isArray(m) ? modelInfo(m[side === 'a' ? 0 : 1]) : m[side];
      if (info) who.replaceChildren(...revealNodes(info));
    }
  }
}

function modelInfo(name) {
  if (!name) return null;
  const found = (st.models || []).find((x) => x.name === name);
  return found || { name, display_name: name };
}

function revealNodes(info) {
  const nodes = [el('span', { class: 'reveal', text: info.display_name || info.name })];
  if (info.organization) nodes.push(el('span', { class: 'muted', text: ' · ' + info.organization }));
  if (info.license)
    nodes.push(el('span', { class: 'badge' + (info.license === 'open' ? ' open' : ''),
                            text: info.license }));
  return nodes;
}

function resetPanes() {
  for (const side of ['a', 'b']) {
    const msgs = pane(side).querySelector('.msgs');
    answers.clear();
    msgs.replaceChildren(el('p', { class: 'muted hint',
      text: side === 'a' || st.mode !== 'direct' ? 'The answer will appear here.' : '' }));
  }
  st.sides = {};
}

function updateControls() {
  const canVote = !!st.battle && st.battle.state === 'ready' && !st.voted &&
                  !st.streaming && st.mode !== 'direct';
  for (const b of ui.votes.querySelectorAll('button')) b.disabled = !canVote;
  ui.votes.hidden = st.mode === 'direct';
  const max = st.battle ? st.battle.max_turns : null;
  const atLimit = max != null && st.turns >= max;
  const over = st.voted || atLimit;
  ui.send.disabled = st.streaming || over;
  ui.prompt.disabled = over;
  ui.prompt.placeholder = st.voted
    ? 'Start a new battle to keep chatting (N)'
    : atLimit ? 'Turn limit reached: vote, or start a new battle'
              : 'Ask anything (Enter sends, Shift+Enter adds a line)';
  ui.regen.disabled = st.streaming || st.voted || st.turns === 0;
  ui.turns.textContent = st.battle && max ? `Turn ${st.turns} of ${max}` : '';
  ui.app.dataset.state = st.streaming ? 'streaming'
    : st.voted ? 'voted' : st.battle ? st.battle.state : 'empty';
}

// --- modes and pickers -----------------------------------------------------

async function loadModels() {
  if (st.models) return st.models;
  const r = await api('GET', '/api/models');
  st.models = r.models || [];
  for (const sel of [ui.pickA, ui.pickB]) {
    sel.replaceChildren(...st.models.map((m) =>
      el('option', { value: m.name, text: m.display_name || m.name })));
  }
  if (st.models.length > 1) ui.pickB.selectedIndex = 1;
  return st.models;
}

async function setMode(mode) {
  newBattle();
  st.mode = mode;
  for (const b of document.querySelectorAll('.modes button'))
    b.setAttribute('aria-pressed', b.dataset.mode === mode ? 'true' : 'false');
  ui.panes.classList.toggle('single', mode === 'direct');
  pane('b').hidden = mode === 'direct';
  ui.pickers.hidden = mode === 'anonymous';
  ui.labelB.hidden = ui.pickB.hidden = mode !== 'named';
  ui.labelA.textContent = mode === 'direct' ? 'Model' : 'Model A';
  ui.newb.textContent = mode === 'direct' ? '+ New chat' : '+ New battle';
  ui.intro.textContent = {
    anonymous: 'Ask anything: two anonymous models answer side by side. ' +
               'Vote for the better answer; their names are revealed after your vote.',
    named: 'Pick two models and compare their answers side by side.',
    direct: 'Chat with one model of your choice.',
  }[mode];
  resetPanes();
  setHeaders();
  updateControls();
  if (mode !== 'anonymous') {
    try { await loadModels(); } catch (e) { notify(describeError(e), 'error'); }
  }
}

// --- the battle flow -------------------------------------------------------

// The open battle survives a reload of the tab (sessionStorage: this tab
// only); a voted or abandoned one does not.
const SAVED = 'arena-battle';
function remember() {
  try {
    if (st.battle && !st.voted)
      sessionStorage.setItem(SAVED, JSON.stringify({ id: st.battle.id, mode: st.mode,
                                                     max_turns: st.battle.max_turns }));
    else sessionStorage.removeItem(SAVED);
  } catch (_) { /* storage disabled: no restore */ }
}

async function restore() {
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(SAVED) || 'null'); } catch (_) { return; }
  if (!saved || typeof saved.id !== 'string') return;
  let b;
  try {
    b = await api('GET', `/api/battles/${encodeURIComponent(saved.id)}`);
  } catch (_) {
    remember();
    return;
  }
  if (b.vote || !Array.isArray(b.turns)) { remember(); return; }
  await setMode(b.mode || saved.mode);
  st.battle = { id: b.id || saved.id, mode: b.mode, state: b.state, models: b.models,
                max_turns: b.max_turns ?? saved.max_turns ?? null };
  for (const t of b.turns) {
    openSlots(t.prompt);
    for (const side of activeSides()) {
      const s = st.sides[side];
      s.text = t[side] || '';
      finishSide(side, null, t[side] == null ? 'No answer was stored for this turn.' : null);
    }
  }
  st.turns = b.turns.length;
  setHeaders();
  updateControls();
  remember();
  if (b.state === 'ready' && st.mode !== 'direct')
    notify('Your battle is back: vote, or keep chatting.');
}

function newBattle() {
  if (st.ctrl) st.ctrl.abort();
  st.ctrl = null;
  st.battle = null;
  st.turns = 0;
  st.streaming = false;
  st.voted = false;
  for (const b of ui.votes.querySelectorAll('button')) b.removeAttribute('aria-pressed');
  notify('');
  resetPanes();
  setHeaders();
  updateControls();
  remember();
}

async function createBattle() {
  const body = { mode: st.mode };
  if (st.mode === 'named') {
    if (ui.pickA.value === ui.pickB.value)
      throw new ApiError(400, 'invalid_field', 'pick two different models', null);
    body.models = [ui.pickA.value, ui.pickB.value];
  } else if (st.mode === 'direct') {
    body.models = [ui.pickA.value];
  }
  const b = await api('POST', '/api/battles', body);
  st.battle = b;
  st.turns = 0;
  setHeaders();
  remember();
  return b;
}

// Opens answer slots for a new turn (or resets the last ones to regenerate).
function openSlots(prompt) {
  for (const side of activeSides()) {
    const msgs = pane(side).querySelector('.msgs');
    const hint = msgs.querySelector('.hint');
    if (hint) hint.remove();
    let s = st.sides[side];
    if (prompt !== null) {
      msgs.append(el('div', { class: 'msg user', text: prompt }));
      const wrap = el('div', { class: 'msg bot streaming', 'aria-busy': 'true' });
      const body = el('div', { class: 'md' });
      const meta = el('div', { class: 'stats' });
      wrap.append(body, meta);
      msgs.append(wrap);
      s = st.sides[side] = { wrap, body, meta };
      answers.add(s);
    } else if (s) {
      s.body.replaceChildren();
      s.meta.replaceChildren();
      s.wrap.classList.add('streaming');
      s.wrap.setAttribute('aria-busy', 'true');
    }
    Object.assign(s, { text: '', done: false, failed: false });
  }
}

function finishSide(side, meta, error) {
  const s = st.sides[side];
  if (!s || s.done) return;
  s.done = true;
  s.wrap.classList.remove('streaming');
  s.wrap.removeAttribute('aria-busy');
  if (error) {
    s.failed = true;
    s.meta.replaceChildren(el('span', { class: 'err', text: error }));
  } else if (meta) {
    const parts = [];
    if (meta.tokens != null) parts.push(`${meta.tokens} tokens`);
    if (meta.ttft_ms != null) parts.push(`first token ${meta.ttft_ms} ms`);
    if (meta.tokens && meta.gen_ms)
      parts.push(`${(meta.tokens / (meta.gen_ms / 1000)).toFixed(0)} tokens/s`);
    s.meta.textContent = parts.join(' · ');
  }
  touch(s);
}

// POSTs to a turn or regenerate endpoint and consumes its event stream.
async function runStream(path, body, prompt) {
  st.streaming = true;
  updateControls();
  const ctrl = new AbortController();
  st.ctrl = ctrl;
  let res;
  try {
    res = await fetch(path, {
      method: 'POST', credentials: 'same-origin', signal: ctrl.signal,
      headers: body ? { 'Content-Type': 'application/json',
                        Accept: 'text/event-stream' }
                    : { Accept: 'text/event-stream' },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!res.ok) throw await errorFrom(res);
  } catch (e) {
    st.streaming = false;
    if (st.ctrl === ctrl) st.ctrl = null;
    updateControls();
    if (e.name === 'AbortError') return false;
    if (e instanceof ApiError && e.code === 'turn_limit' && st.battle)
      st.turns = st.battle.max_turns;
    if (e instanceof ApiError && e.code === 'voted') st.voted = true;
    notify(describeError(e instanceof ApiError ? e
      : new ApiError(0, 'network', 'cannot reach the server; check your connection')), 'error');
    updateControls();
    return false;
  }

  openSlots(prompt);
  if (prompt !== null) ui.prompt.value = '';
  let ended = false;
  const flags = [];
  try {
    await streamEvents(res, (name, d) => {
      const s = d && st.sides[d.side];
      switch (name) {
        case 'turn':
          if (d.turn) st.turns = d.turn;
          updateControls();
          break;
        case 'token':
          if (s && !s.done) { s.text += d.text || ''; touch(s); }
          break;
        case 'done':
          finishSide(d.side, d, null);
          break;
        case 'error':
          finishSide(d.side, null, `This model failed: ${d.message || d.code || 'error'}`);
          break;
        case 'flagged':
          flags.push(d.message || 'This battle will not count for the leaderboard.');
          break;
        case 'end':
          ended = true;
          if (st.battle) st.battle.state = d.state;
          if (d.turn) st.turns = d.turn;
          break;
      }
    });
  } catch (e) {
    if (e.name === 'AbortError') return false;
  } finally {
    if (st.ctrl === ctrl) st.ctrl = null;
    st.streaming = false;
  }
  for (const side of activeSides()) {
    if (!ended) finishSide(side, null, 'The connection was interrupted.');
    else finishSide(side, null, null);
  }
  const msgs = [...flags];
  if (!ended) msgs.push('The connection was interrupted: regenerate, or start a new battle.');
  else if (st.battle && st.battle.state === 'failed')
    msgs.push('A model failed, so this battle cannot be voted on: regenerate, or start a new battle.');
  else if (st.battle && st.battle.state === 'ready' && st.mode !== 'direct')
    msgs.push('Both answers are ready: which one is better? Vote below, or keep chatting.');
  if (st.battle && st.battle.max_turns && st.turns >= st.battle.max_turns)
    msgs.push(`This battle reached its limit of ${st.battle.max_turns} turns.`);
  const sentence = (x) => x.charAt(0).toUpperCase() + x.slice(1) + (/[.!?]$/.test(x) ? '' : '.');
  notify(msgs.map(sentence).join(' '), !ended || (st.battle && st.battle.state === 'failed') ? 'error' : '');
  updateControls();
  return ended;
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || st.streaming || st.voted) return;
  notify('');
  try {
    if (!st.battle) await createBattle();
  } catch (e) {
    notify(describeError(e), 'error');
    return;
  }
  await runStream(`/api/battles/${encodeURIComponent(st.battle.id)}/turns`,
                  { prompt: text }, text);
}

async function regenerate() {
  if (!st.battle || st.streaming || st.voted || st.turns === 0) return;
  notify('');
  await runStream(`/api/battles/${encodeURIComponent(st.battle.id)}/regenerate`,
                  null, null);
}

async function vote(winner) {
  if (!st.battle || st.voted || st.battle.state !== 'ready') return;
  for (const b of ui.votes.querySelectorAll('button')) b.disabled = true;
  try {
    const r = await api('POST', `/api/battles/${encodeURIComponent(st.battle.id)}/vote`,
                        { winner });
    st.voted = true;
    remember();
    st.battle.models = r.models || st.battle.models;
    setHeaders();
    const chosen = ui.votes.querySelector(`button[data-vote="${CSS.escape(winner)}"]`);
    if (chosen) chosen.setAttribute('aria-pressed', 'true');
    const names = r.models
      ? ` Model A was ${r.models.a.display_name || r.models.a.name}; ` +
        `Model B was ${r.models.b.display_name || r.models.b.name}.`
      : '';
    notify('Thank you for voting!' + names +
           (r.counted === false ? ` This vote will not count: ${r.reason || 'flagged'}.` : '') +
           ' Press N for a new battle.');
    updateControls();
    ui.newb.focus();
  } catch (e) {
    if (e instanceof ApiError && e.code === 'already_voted') st.voted = true;
    notify(describeError(e), 'error');
    updateControls();
  }
}

// --- wiring ----------------------------------------------------------------

ui.form.addEventListener('submit', (ev) => { ev.preventDefault(); send(); });
ui.regen.addEventListener('click', regenerate);
ui.newb.addEventListener('click', () => { newBattle(); ui.prompt.focus(); });
for (const b of ui.votes.querySelectorAll('button'))
  b.addEventListener('click', () => vote(b.dataset.vote));
for (const b of document.querySelectorAll('.modes button'))
  b.addEventListener('click', () => setMode(b.dataset.mode));
for (const sel of [ui.pickA, ui.pickB])
  sel.addEventListener('change', () => { if (st.battle) newBattle(); });

ui.prompt.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send();
  } else if (ev.key === 'Escape') {
    ui.prompt.blur();
  }
});

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.defaultPrevented) return;
  const t = ev.target;
  if (t && (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT' ||
            t.tagName === 'SELECT' || t.isContentEditable)) return;
  const votes = { 1: 'model_a', 2: 'model_b', 3: 'tie', 4: 'tie (bothbad)' };
  const k = ev.key.toLowerCase();
  if (votes[k] && st.mode !== 'direct') { ev.preventDefault(); vote(votes[k]); }
  else if (k === 'n') { ev.preventDefault(); newBattle(); ui.prompt.focus(); }
  else if (k === 'r') { ev.preventDefault(); regenerate(); }
  else if (k === '/') { ev.preventDefault(); ui.prompt.focus(); }
  else if (k === 't') { ev.preventDefault(); $('#theme').click(); }
});

// The visitor leaving cancels both generations (the server sees the
// disconnect); abort explicitly so the request ends at once.
addEventListener('pagehide', () => { if (st.ctrl) st.ctrl.abort(); });

initTheme($('#theme'));
resetPanes();
updateControls();
const wanted = new URLSearchParams(location.search).get('mode');
if (wanted === 'named' || wanted === 'direct') setMode(wanted);
else restore();
ui.app.dataset.ready = 'true';
performance.mark('arena-ready');

// For the browser test and for debugging: the page's real renderer.
window.arenaUI = { markdownReady };
