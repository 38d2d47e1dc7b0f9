// admin.js: the internal dashboard (/admin/). Every call goes to an admin
// endpoint of docs/api.md; a 401 from any of them shows the sign-in form
// instead, so the page itself holds no secret and no state worth stealing.
import { $, el, api, describeError, initTheme, fmt, ApiError } from './common.js';
import { themeCharts, mount, palette } from './charts.js';

const ui = {
  app: $('#app'), notice: $('#notice'), signin: $('#signin'), dash: $('#dash'),
  form: $('#signin-form'), password: $('#password'), signout: $('#signout'),
};
const st = { dash: null, models: null };

function notify(text, kind = '') {
  ui.notice.className = 'notice' + (kind ? ' ' + kind : '');
  ui.notice.textContent = text || '';
}

function showSignin(message) {
  ui.dash.hidden = true;
  ui.signin.hidden = false;
  ui.signout.hidden = true;
  ui.app.dataset.ready = 'signin';
  notify(message || '', message ? 'error' : '');
  ui.password.focus();
}

// --- rendering -------------------------------------------------------------

const rows = (tbody, items, make) =>
  tbody.replaceChildren(...(items.length ? items.map(make)
    : [el('tr', {}, el('td', { class: 'muted', colspan: 9, text: 'Nothing yet.' }))]));

function shareBars(canvas, items, label) {
  const total = items.reduce((s, x) => s + (x.battles || 0), 0) || 1;
  const top = [...items].sort((a, b) => b.battles - a.battles).slice(0, 12);
  mount(canvas, {
    type: 'bar',
    data: { labels: top.map((x) => x.name),
            datasets: [{ label, data: top.map((x) => (100 * x.battles) / total),
                         backgroundColor: palette()[0] }] },
    options: { indexAxis: 'y', plugins: { legend: { display: false },
               title: { display: true, text: label } },
               scales: { x: { title: { display: true, text: '% of battles' } } } },
  });
}

function renderDash() {
  const d = st.dash;
  themeCharts();
  const [c0, c1] = palette();
  const t = d.totals || {};
  $('#kpis').replaceChildren(
    ...[['Votes', fmt.int(t.votes)], ['Battles', fmt.int(t.battles)],
        ['Visitors', fmt.int(t.visitors)],
        ['Cost per battle', d.cost_per_battle_usd == null ? '–'
          : '$' + d.cost_per_battle_usd.toFixed(4)],
        ['Total cost', t.cost_usd == null ? '–' : '$' + t.cost_usd.toFixed(2)]]
      .map(([k, v]) => el('div', { class: 'kpi' }, el('b', { text: v }), k)));

  const series = (d.votes_over_time && d.votes_over_time.series) || [];
  mount($('#c-time'), {
    type: 'line',
    data: { labels: series.map((p) => String(p.t).slice(0, 16).replace('T', ' ')),
            datasets: [
              { label: 'votes', data: series.map((p) => p.votes), borderColor: c0,
                backgroundColor: c0 },
              { label: 'battles', data: series.map((p) => p.battles), borderColor: c1,
                backgroundColor: c1 }] },
    options: { scales: { y: { beginAtZero: true } } },
  });

  const models = d.models || [];
  const label = (m) => m.display_name || m.model;
  mount($('#c-ttft'), {
    type: 'bar',
    data: { labels: models.map(label),
            datasets: [{ label: 'time to first token (ms)', data: models.map((m) => m.ttft_ms),
                         backgroundColor: c0 }] },
    options: { indexAxis: 'y' },
  });
  mount($('#c-tps'), {
    type: 'bar',
    data: { labels: models.map(label),
            datasets: [{ label: 'tokens per second', data: models.map((m) => m.tokens_per_s),
                         backgroundColor: c1 }] },
    options: { indexAxis: 'y' },
  });
  rows($('#t-speed tbody'), models, (m) => el('tr', {},
    el('th', { scope: 'row', text: label(m) }),
    el('td', { class: 'num', text: fmt.int(m.answers) }),
    el('td', { class: 'num', text: fmt.num(m.ttft_ms, 0) }),
    el('td', { class: 'num', text: fmt.num(m.tokens_per_s, 1) }),
    el('td', { class: 'num', text: fmt.int(m.failures) }),
    el('td', { class: 'num', text: m.cost_usd == null ? '–' : m.cost_usd.toFixed(4) })));

  shareBars($('#c-cat'), d.categories || [], 'categories');
  shareBars($('#c-lang'), d.languages || [], 'languages');
  rows($('#t-themes tbody'), d.themes || [], (x) => el('tr', {},
    el('td', { text: x.theme }), el('td', { class: 'num', text: fmt.int(x.count) })));
  rows($('#t-flag tbody'), d.flagged_visitors || [], (v) => el('tr', {},
    el('td', {}, el('code', { text: v.visitor })),
    el('td', { class: 'num', text: fmt.int(v.votes) }),
    el('td', { text: v.reason || '' }),
    el('td', { text: v.last_seen ? new Date(v.last_seen).toLocaleString() : '–' })));
}

function renderModels() {
  rows($('#t-models tbody'), st.models, (m) => {
    const id = 'm-' + m.name.replace(/[^A-Za-z0-9_-]/g, '_');
    const weight = el('input', { type: 'number', id: id + '-w', min: 0, step: 0.1,
                                 value: m.weight ?? 1, class: 'weight' });
    const enabled = el('input', { type: 'checkbox', id: id + '-e' });
    enabled.checked = !!m.enabled;
    weight.addEventListener('change', () => patch(m, { weight: parseFloat(weight.value) }, weight));
    enabled.addEventListener('change', () => patch(m, { enabled: enabled.checked }, enabled));
    return el('tr', { 'data-model': m.name },
      el('th', { scope: 'row' }, m.display_name || m.name,
         m.display_name && m.display_name !== m.name
           ? el('div', { class: 'muted', text: m.name }) : null),
      el('td', { text: m.organization || '–' }),
      el('td', { text: m.license || '–' }),
      el('td', { text: m.kind === 'remote' ? `remote: ${m.endpoint || ''}` : (m.path || m.kind || 'local') }),
      el('td', { class: 'num', text: `${fmt.price(m.price_in)} / ${fmt.price(m.price_out)}` }),
      el('td', {}, el('label', { class: 'sr-only', for: id + '-w',
                                 text: `Weight of ${m.name}` }), weight),
      el('td', {}, el('label', { class: 'sr-only', for: id + '-e',
                                 text: `${m.name} enabled` }), enabled));
  });
}

async function patch(model, fields, input) {
  input.disabled = true;
  try {
    const r = await api('PATCH', '/api/admin/models/' + encodeURIComponent(model.name), fields);
    Object.assign(model, r && r.name ? r : fields);
    notify(`Saved ${model.name}: ${Object.entries(fields).map(([k, v]) => `${k} = ${v}`).join(', ')}.`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return showSignin('Your session ended: sign in again.');
    notify(`Could not save ${model.name}: ${describeError(e)}`, 'error');
    renderModels();
  } finally {
    input.disabled = false;
  }
}

// --- adding a model ----------------------------------------------------------

const addForm = $('#add-form');

// Shows the fields of the chosen kind (a file here, or an endpoint).
function addKind() {
  const kind = addForm.elements.kind.value;
  for (const x of addForm.querySelectorAll('[data-kind]')) x.hidden = x.dataset.kind !== kind;
  addForm.elements.path.required = kind === 'local';
  addForm.elements.endpoint.required = kind === 'remote';
}

// The POST body: the fields of the kind chosen, empty optional ones left out.
function addBody() {
  const f = addForm.elements, kind = f.kind.value;
  const body = { name: f.name.value.trim(), kind, license: f.license.value,
                 enabled: f.enabled.checked };
  const text = ['display_name', 'organization', 'system_prompt'].concat(
    kind === 'local' ? ['path'] : ['endpoint', 'remote_model', 'api_key_env']);
  for (const k of text) if (f[k].value.trim()) body[k] = f[k].value.trim();
  for (const k of ['price_in', 'price_out', 'weight'])
    if (f[k].value !== '') body[k] = parseFloat(f[k].value);
  return body;
}

addForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const button = addForm.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const body = addBody();
    const m = await api('POST', '/api/admin/models', body);
    st.models = st.models.filter((x) => x.name !== m.name).concat([m]);
    renderModels();
    addForm.reset();
    addKind();
    notify(`Added ${m.name}` + (m.enabled && m.loaded === false
      ? ': enabled, but its engine could not be opened yet (see the server log).' : '.'));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return showSignin('Your session ended: sign in again.');
    notify('Could not add the model: ' + describeError(e), 'error');
  } finally {
    button.disabled = false;
  }
});
addForm.elements.kind.addEventListener('change', addKind);
addKind();

function exportLinks() {
  const f = { from: $('#x-from').value, to: $('#x-to').value,
              category: $('#x-cat').value.trim(), model: $('#x-model').value.trim() };
  for (const a of document.querySelectorAll('#export-links a')) {
    const q = new URLSearchParams({ format: a.dataset.format });
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    a.href = '/api/admin/export?' + q;
  }
}

// --- loading ---------------------------------------------------------------

async function load() {
  ui.app.dataset.ready = 'loading';
  // Each part shows what it can: the registry and the exports still work
  // when the statistics fail, and the other way round.
  const [dash, models] = await Promise.allSettled([
    api('GET', '/api/admin/dashboard'), api('GET', '/api/admin/models')]);
  const failed = [dash, models].filter((x) => x.status === 'rejected').map((x) => x.reason);
  if (failed.some((e) => e instanceof ApiError && e.status === 401)) return showSignin();
  st.dash = dash.status === 'fulfilled' ? dash.value : null;
  st.models = models.status === 'fulfilled' ? models.value.models || [] : [];
  notify(failed.length ? 'Could not load ' +
    [dash.status === 'rejected' ? 'the statistics' : null,
     models.status === 'rejected' ? 'the models registry' : null].filter(Boolean).join(' or ') +
    ': ' + failed.map(describeError).join('; ') : '', failed.length ? 'error' : '');
  ui.signin.hidden = true;
  ui.dash.hidden = false;
  ui.signout.hidden = false;
  for (const id of ['h-kpi', 'h-time', 'h-speed', 'h-ask', 'h-flag'])
    document.getElementById(id).parentElement.hidden = !st.dash;
  if (st.dash) renderDash();
  renderModels();
  exportLinks();
  ui.app.dataset.ready = failed.length ? 'partial' : 'true';
}

ui.form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  notify('');
  try {
    await api('POST', '/api/admin/login', { password: ui.password.value });
    ui.password.value = '';
    notify('');
    await load();
  } catch (e) {
    showSignin(e instanceof ApiError && e.status === 401
      ? 'Wrong password.' : 'Could not sign in: ' + describeError(e));
  }
});
ui.signout.addEventListener('click', async () => {
  try { await api('POST', '/api/admin/logout'); } catch (_) { /* signed out anyway */ }
  showSignin();
});
$('#export').addEventListener('input', exportLinks);
initTheme($('#theme'));
document.addEventListener('themechange', () => { if (st.dash) renderDash(); });
load();
