// charts.js: Chart.js, registered with only the pieces the leaderboard and
// the dashboard use (so the bundle carries nothing else), and themed from
// the page's CSS variables.
import {
  Chart, BarController, BarElement, LineController, LineElement,
  PointElement, ScatterController, CategoryScale, LinearScale,
  Tooltip, Legend, Filler,
} from 'chart.js';
import { cssVar } from './common.js';

Chart.register(BarController, BarElement, LineController, LineElement,
               PointElement, ScatterController, CategoryScale, LinearScale,
               Tooltip, Legend, Filler);

export function themeCharts() {
  Chart.defaults.color = cssVar('--fg');
  Chart.defaults.borderColor = cssVar('--line');
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
}

// mount(canvas, config): (re)draws a chart on a canvas, replacing the old.
export function mount(canvas, config) {
  const old = Chart.getChart(canvas);
  if (old) old.destroy();
  return new Chart(canvas, config);
}

// Colours for series, from the theme: accent, the B colour, green, muted.
export function palette() {
  return [cssVar('--accent'), cssVar('--b'), cssVar('--good'), cssVar('--muted'),
          cssVar('--bad')];
}
