// The seed sample (shared/seeds/000_908553e08782f3da.txt: login, logout, destroy, login
// settings) as the page of a web project that installed tim-wasm from npm, plus `serverURL`.
// Each consumer project gets this file as src/index.js (the script-tag page gets it without its
// import line, as a classic script using the global TIM). The test passes the app, timd's URL and
// the user in the query string and reads what happened from window.* through WebDriver.
import TIM from 'tim-wasm';

const params = new URLSearchParams(location.search);
let tim = TIM.create({ SDKAppID: Number(params.get('sdkappid')), serverURL: params.get('server') });
window.events = [];

// Login Settings
let onKickedOut = function (event) {
  console.log(event.data.type);
  window.events.push(`${event.name}:${event.data.type}`);
};
tim.on(TIM.EVENT.KICKED_OUT, onKickedOut);
tim.on(TIM.EVENT.SDK_READY, (event) => window.events.push(event.name));
tim.on(TIM.EVENT.SDK_NOT_READY, (event) => window.events.push(event.name));

// Login: resolves to { data } or { error: { code, message } }, as the sample's callbacks saw it.
window.seedLogin = () => new Promise((settle) => {
  let promise = tim.login({ userID: params.get('user'), userSig: params.get('sig') });
  promise.then(function (imResponse) {
    console.log(imResponse.data); // Logged in successfully
    if (imResponse.data.repeatLogin === true) {
      // This indicates that the account is already logged in.
      console.log(imResponse.data.errorInfo);
    }
    settle({ data: imResponse.data });
  }).catch(function (imError) {
    console.warn('login error:', imError); // Error information
    settle({ error: { code: imError.code, message: imError.message } });
  });
});

// Logout
window.seedLogout = () => new Promise((settle) => {
  let promise = tim.logout();
  promise.then(function (imResponse) {
    console.log(imResponse.data); // Logged out successfully
    settle({ data: imResponse.data });
  }).catch(function (imError) {
    console.warn('logout error:', imError);
    settle({ error: { code: imError.code, message: imError.message } });
  });
});

// Terminating
window.seedDestroy = () => tim.destroy().then(() => {
  console.log('sdk destroyed');
  return 'sdk destroyed';
});

window.firstLogin = window.seedLogin();
window.pageReady = true;
