// The seed sample (shared/seeds/000_908553e08782f3da.txt) as TypeScript, type-checked with
// `tsc --strict` against the declarations shipped in the tarball. The code is the sample's; the
// only addition is the type of `onKickedOut`'s parameter, which strict mode requires for a
// function expression that is not written inline.
import TIM, { type TIMEvent } from 'tim-wasm';

let tim = TIM.create({ SDKAppID: 0, serverURL: 'wss://timd.example.com' });

// Login
let promise = tim.login({userID: 'your userID', userSig: 'your userSig'});
promise.then(function(imResponse) {
  console.log(imResponse.data); // Logged in successfully
  if (imResponse.data.repeatLogin === true) {
    // This indicates that the account is already logged in. This feature is supported from v2.5.1.
    console.log(imResponse.data.errorInfo);
  }
}).catch(function(imError) {
  console.warn('login error:', imError); // Error information
});

// Logout
let logoutPromise = tim.logout();
logoutPromise.then(function(imResponse) {
  console.log(imResponse.data); // Logged out successfully
}).catch(function(imError) {
  console.warn('logout error:', imError);
});

// Terminating
tim.destroy().then(() => {
  console.log('sdk destroyed');
});

// Login Settings
let onKickedOut = function (event: TIMEvent<typeof TIM.EVENT.KICKED_OUT>) {
  console.log(event.data.type);
  // TIM.TYPES.KICKED_OUT_MULT_ACCOUNT, KICKED_OUT_MULT_DEVICE, KICKED_OUT_USERSIG_EXPIRED, KICKED_OUT_REST_API
};
tim.on(TIM.EVENT.KICKED_OUT, onKickedOut);
