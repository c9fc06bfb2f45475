// The demo server's own endpoints (timd --demo only; see crates/server/src/demo.rs).
// Every call resolves with the JSON answer, or rejects with an Error carrying `code`.

const q = encodeURIComponent;

async function call(method, url) {
  const res = await fetch(url, { method, cache: 'no-store' });
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    throw Object.assign(new Error(body?.message ?? `${res.status} ${res.statusText}`), { code: body?.code ?? res.status });
  }
  return body;
}

export const api = {
  /** { SDKAppID, webInstances, platformInstances, policy, admin, heartbeatMs, resumeGraceMs, maxDemoDevices } */
  settings: () => call('GET', '/demo/settings'),
  /** { SDKAppID, userID, userSig }: a test UserSig, signed by the demo server. */
  usersig: (user) => call('GET', `/demo/usersig?user=${q(user)}`),
  /** { user, serverTime, instances: [{ instance, platform, since, online, demoDevice }],
   *    kicks: [{ instance, platform, since, reason, at }] } */
  instances: (user) => call('GET', `/demo/instances?user=${q(user)}`),
  /** Logs a native device in (in the server's process): { instance, user, platform }. */
  startDevice: (user, platform) => call('POST', `/demo/devices?user=${q(user)}&platform=${q(platform)}`),
  stopDevice: (instance) => call('DELETE', `/demo/devices/${q(instance)}`),
  /** The admin REST API's kick, run by the server as the admin: { ActionStatus, ErrorCode, ErrorInfo }. */
  kick: (user) => call('POST', `/demo/kick?user=${q(user)}`),
};
