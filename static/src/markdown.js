// markdown.js: the one place model output becomes HTML.
//
// markdown-it with html:false escapes every raw HTML tag in the text (it
// never passes markup through), validates link targets (no javascript:,
// vbscript:, file: or data: links), and renders fenced code as
// <pre><code>. Images are disabled so model output cannot make the
// visitor's browser fetch arbitrary URLs; links open with rel=noopener.
import MarkdownIt from 'markdown-it';

const md = new MarkdownIt({ html: false, linkify: true, typographer: false,
                            breaks: false });
md.disable(['image']);

const defaultLinkOpen = md.renderer.rules.link_open ||
  ((tokens, idx, options, env, self) => self.renderToken(tokens, idx, options));
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  tokens[idx].attrSet('rel', 'nofollow noopener noreferrer');
  tokens[idx].attrSet('target', '_blank');
  return defaultLinkOpen(tokens, idx, options, env, self);
};

// renderMarkdown(text) -> HTML string, safe to assign to innerHTML.
export function renderMarkdown(text) {
  return md.render(String(text));
}
