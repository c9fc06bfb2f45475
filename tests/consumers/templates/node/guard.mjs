// Records every read of a page global (window, document, location, sessionStorage, localStorage,
// navigator, self) from now on, as server-side rendering would hit them: in Node they are absent
// (or, navigator, partial), so an SDK that reads them at import or in TIM.create has a bug that
// only shows on a server. The getters return what Node has (mostly undefined).
export function installGuard() {
  const touched = [];
  for (const name of ['window', 'document', 'location', 'sessionStorage', 'localStorage', 'navigator', 'self']) {
    const had = Object.getOwnPropertyDescriptor(globalThis, name);
    const value = had && ('value' in had ? had.value : had.get.call(globalThis));
    Object.defineProperty(globalThis, name, {
      configurable: true,
      get() { touched.push(name); return value; },
    });
  }
  return touched;
}
