// sse.js: Server-Sent Events over fetch(), since EventSource cannot POST.
//
// Parses the text/event-stream format (WHATWG HTML, "Server-sent events"):
// lines end with LF, CRLF or CR; `event:` names the event, `data:` lines
// are joined with LF; `:` starts a comment; a blank line dispatches. A
// final event without its blank line (stream cut off) is not dispatched.

export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent; // (name, dataString) => void
    this.buf = '';
    this.event = '';
    this.data = [];
  }

  // push(chunk): feed decoded text as it arrives, in any split.
  push(chunk) {
    this.buf += chunk;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) break;
      // A lone CR at the very end may be the first half of CRLF: wait.
      if (m[0] === '\r' && m.index === this.buf.length - 1) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === '') {
      if (this.data.length > 0)
        this.onEvent(this.event || 'message', this.data.join('\n'));
      this.event = '';
      this.data = [];
      return;
    }
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    // id and retry mean nothing for a one-shot POST stream.
  }
}

// streamEvents(response, onEvent): reads a fetch Response body to its end,
// calling onEvent(name, parsedJson) per event. Resolves when the stream
// ends; rejects on network errors or abort.
export async function streamEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder('utf-8');
  const parser = new SseParser((name, data) => {
    let obj = null;
    try { obj = JSON.parse(data); } catch (_) { obj = { raw: data }; }
    onEvent(name, obj);
  });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
}
