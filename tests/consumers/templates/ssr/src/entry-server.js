// The server's half: renders the app to HTML in Node (vite build --ssr keeps tim-wasm, preact
// and preact-render-to-string as imports of node_modules).
import { h } from 'preact';
import { renderToString } from 'preact-render-to-string';
import { App } from './app.js';

export function render() {
  return renderToString(h(App));
}
