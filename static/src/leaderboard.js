// leaderboard.js: the public leaderboard (/leaderboard/): the table, the
// interval plot, rating versus price, and the win-rate heatmaps, from the
// GET endpoints of docs/api.md ("Leaderboard").
import { $, el, api, describeError, initTheme, fmt } from './common.js';
import { themeCharts, mount, palette } from './charts.js';
import { blended, priceFrontier, heatColours } from './lb_math.js';

const ui = {
  app: $('#app'), cat: $('#category'), method: $('#method'),
  summary: $('#summary'), notice: $('#notice'), body: $('#board tbody'),
  frontier: $('#frontier'), heatN: $('#heat-n'),
};
const st = { board: null, matrices: null, sort: { key: 'rank_ub', dir: 1 } };

const name = (m) => m.display_name || m.model;

// --- table -----------------------------------------------------------------

function sortValue(m, key) {
  if (key === 'price') return blended(m);
  return m[key];
}

function renderTable() {
  const { key, dir } = st.sort;
  const rows = [...st.board.models].sort((x, y) => {
    const a = sortValue(x, key), b = sortValue(y, key);
    if (a == null && b == null) return x.rank_ub - y.rank_ub;
    if (a == null) return 1;
    if (b == null) return -1;
    return (a < b ? -1 : a > b ? 1 : 0) * dir || y.rating - x.rating;
  });
  ui.body.replaceChildren(...rows.map((m) => el('tr', { 'data-model': m.model },
    el('td', { class: 'num', text: m.rank_ub }),
    el('th', { scope: 'row' }, name(m),
       m.provisional ? el('span', { class: 'badge', text: 'provisional',
                                    title: 'too few votes for a stable rating' }) : null),
    el('td', { class: 'num', text: fmt.num(m.rating, 0) }),
    el('td', { class: 'num',
               text: `+${fmt.num(m.ci_high - m.rating, 0)} / −${fmt.num(m.rating - m.ci_low, 0)}` }),
    el('td', { class: 'num', text: fmt.int(m.battles) }),
    el('td', { text: m.organization || '–' }),
    el('td', {}, el('span', { class: 'badge' + (m.license === 'open' ? ' open' : ''),
                              text: m.license || '?' })),
    el('td', { class: 'num', text: `${fmt.price(m.price_in)} / ${fmt.price(m.price_out)}` }),
    el('td', { class: 'num', text: fmt.num(m.tokens_per_s, 0) }),
    el('td', { class: 'num', text: m.ttft_ms == null ? '–' : `${Math.round(m.ttft_ms)} ms` }),
  )));
  for (const th of document.querySelectorAll('#board th[data-key]')) {
    th.setAttribute('aria-sort', th.dataset.key === key
      ? (dir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

// --- charts ----------------------------------------------------------------

function renderIntervals() {
  const models = [...st.board.models].sort((a, b) => b.rating - a.rating);
  $('#intervals-box').style.height = Math.max(200, 60 + 24 * models.length) + 'px';
  const [accent, bcol] = palette();
  const lo = Math.min(...models.map((m) => m.ci_low));
  const hi = Math.max(...models.map((m) => m.ci_high));
  const pad = Math.max(5, (hi - lo) * 0.05);
  mount($('#intervals'), {
    type: 'bar',
    data: {
      labels: models.map(name),
      datasets: [
        { type: 'line', label: 'rating', data: models.map((m) => m.rating),
          showLine: false, backgroundColor: bcol, borderColor: bcol, pointRadius: 4,
          pointHoverRadius: 6 },
        { label: '95% interval', data: models.map((m) => [m.ci_low, m.ci_high]),
          backgroundColor: accent + '55', borderColor: accent, borderWidth: 1,
          barPercentage: 0.6 },
      ],
    },
    options: {
      indexAxis: 'y',
      scales: {
        x: { beginAtZero: false, min: Math.floor(lo - pad), max: Math.ceil(hi + pad),
             title: { display: true, text: 'rating' } },
      },
      plugins: { tooltip: { callbacks: { label: (c) => {
        const m = models[c.dataIndex];
        return `${name(m)}: ${fmt.num(m.rating, 0)} (${fmt.num(m.ci_low, 0)}–${fmt.num(m.ci_high, 0)})`;
      } } } },
    },
  });
}

function renderPrice() {
  const models = st.board.models.filter((m) => blended(m) != null);
  const front = priceFrontier(models);
  const [accent, bcol, good] = palette();
  const pt = (m) => ({ x: blended(m), y: m.rating, m });
  mount($('#price'), {
    type: 'scatter',
    data: {
      datasets: [
        { label: 'open', data: models.filter((m) => m.license === 'open').map(pt),
          backgroundColor: good, borderColor: good, pointRadius: 5, pointStyle: 'circle' },
        { label: 'closed', data: models.filter((m) => m.license !== 'open').map(pt),
          backgroundColor: bcol, borderColor: bcol, pointRadius: 5, pointStyle: 'rectRot' },
        { type: 'line', label: 'price frontier', data: front.map(pt), stepped: 'before',
          borderColor: accent, borderDash: [4, 4], pointRadius: 0, fill: false },
      ],
    },
    options: {
      scales: {
        x: { type: 'linear', title: { display: true, text: 'US$ per million tokens (blended)' },
             min: 0 },
        y: { title: { display: true, text: 'rating' } },
      },
      plugins: { tooltip: { callbacks: { label: (c) => {
        const m = c.raw.m;
        return m ? `${name(m)}: ${fmt.num(m.rating, 0)} at ${fmt.price(blended(m))}` : '';
      } } } },
    },
  });
  const open = front.filter((m) => m.license === 'open');
  ui.frontier.textContent = !front.length ? 'No prices are known yet.'
    : open.length
      ? `Open models on the frontier (nothing cheaper rates higher): ${open.map(name).join(', ')}.`
      : 'No open model is on the price frontier in this category.';
}

// --- heatmaps --------------------------------------------------------------

function heatmap(box, models, matrix, counts) {
  const idx = models.map((m) => st.matrices.models.indexOf(m));
  const t = el('table', { class: 'heat' });
  t.append(el('caption', { class: 'sr-only', text: 'Row model beats column model, win rate' }));
  t.append(el('tr', {}, el('th', { scope: 'col', text: '' }),
    ...models.map((m) => el('th', { scope: 'col', title: m, text: shortName(m) }))));
  models.forEach((m, r) => {
    const tr = el('tr', {}, el('th', { scope: 'row', title: m, text: shortName(m) }));
    models.forEach((_, c) => {
      const v = matrix[idx[r]][idx[c]];
      const n = counts ? counts[idx[r]][idx[c]] : null;
      if (r === c || v == null) {
        tr.append(el('td', { class: 'muted', text: r === c ? '—' : '' }));
        return;
      }
      const { bg, fg } = heatColours(v);
      const td = el('td', { text: (100 * v).toFixed(0),
        title: `${m} beats ${models[c]}: ${(100 * v).toFixed(1)}%` + (n != null ? ` over ${n} battles` : '') });
      td.style.background = bg;
      td.style.color = fg;
      tr.append(td);
    });
    t.append(tr);
  });
  box.replaceChildren(t);
}

function shortName(model) {
  const m = st.board && st.board.models.find((x) => x.model === model);
  const n = m ? name(m) : model;
  return n.length > 16 ? n.slice(0, 15) + '…' : n;
}

function renderHeat() {
  if (!st.matrices || !st.matrices.models) return;
  const n = parseInt(ui.heatN.value, 10);
  const order = [...st.board.models].sort((a, b) => b.rating - a.rating)
    .map((m) => m.model).filter((m) => st.matrices.models.includes(m)).slice(0, n);
  heatmap($('#heat-obs'), order, st.matrices.win_rate, st.matrices.battles);
  heatmap($('#heat-pred'), order, st.matrices.predicted, st.matrices.battles);
}

// --- loading ---------------------------------------------------------------

function renderAll() {
  if (!st.board) return;
  themeCharts();
  renderTable();
  renderIntervals();
  renderPrice();
  renderHeat();
}

async function load() {
  const category = ui.cat.value;
  const method = ui.method.value;
  const q = new URLSearchParams({ category, method });
  history.replaceState(null, '', '?' + q);
  ui.app.dataset.ready = 'loading';
  try {
    const [board, matrices] = await Promise.all([
      api('GET', '/api/leaderboard?' + q),
      api('GET', '/api/leaderboard/matrices?' + new URLSearchParams({ category })),
    ]);
    st.board = board;
    st.matrices = matrices;
    const when = board.updated_at ? new Date(board.updated_at) : null;
    ui.summary.textContent = `${fmt.int(board.votes)} vote${board.votes === 1 ? '' : 's'} · ` +
      `${board.models.length} model${board.models.length === 1 ? '' : 's'}` +
      (when && !isNaN(when) ? ` · updated ${when.toLocaleString()}` : '');
    ui.notice.className = 'notice';
    ui.notice.textContent = board.models.length ? '' : 'No votes in this category yet.';
    $('#details').hidden = !board.models.length;
    renderAll();
  } catch (e) {
    ui.notice.className = 'notice error';
    ui.notice.textContent = 'Could not load the leaderboard: ' + describeError(e);
  }
  ui.app.dataset.ready = 'true';
}

async function loadCategories(wanted) {
  try {
    const r = await api('GET', '/api/leaderboard/categories');
    const cats = r.categories || [];
    if (!cats.some((c) => c.name === 'overall')) cats.unshift({ name: 'overall' });
    ui.cat.replaceChildren(...cats.map((c) => el('option', { value: c.name,
      text: c.battles != null ? `${c.name} (${fmt.int(c.battles)})` : c.name })));
  } catch (_) { /* keep "overall" */ }
  if ([...ui.cat.options].some((o) => o.value === wanted)) ui.cat.value = wanted;
}

initTheme($('#theme'));
document.addEventListener('themechange', renderAll);
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', renderAll);
for (const th of document.querySelectorAll('#board th[data-key] button')) {
  th.addEventListener('click', () => {
    const key = th.parentElement.dataset.key;
    const asc = key === 'rank_ub' || key === 'price' || key === 'ttft_ms';
    st.sort = st.sort.key === key ? { key, dir: -st.sort.dir } : { key, dir: asc ? 1 : -1 };
    renderTable();
  });
}
ui.cat.addEventListener('change', load);
ui.method.addEventListener('change', load);
ui.heatN.addEventListener('change', renderHeat);

const params = new URLSearchParams(location.search);
if (params.get('method') === 'elo') ui.method.value = 'elo';
loadCategories(params.get('category') || 'overall').then(load);
