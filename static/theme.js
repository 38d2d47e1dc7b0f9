// Applies the visitor's stored theme before first paint (no flash); the
// toggle itself lives in src/common.js. Kept tiny and synchronous.
try {
  var t = localStorage.getItem('arena-theme');
  if (t === 'dark' || t === 'light') document.documentElement.dataset.theme = t;
} catch (e) { /* storage disabled: follow prefers-color-scheme */ }
