// The shipped declarations are precise, not `any`: the documented values type-check, and
// misuse is an error (an unused @ts-expect-error fails the check).
import TIM from 'tim-wasm';

const ready: 'sdkStateReady' = TIM.EVENT.SDK_READY;
const notReady: 'sdkStateNotReady' = TIM.EVENT.SDK_NOT_READY;
const kicked: 'kickedOut' = TIM.EVENT.KICKED_OUT;
const multipleAccount: 'multipleAccount' = TIM.TYPES.KICKED_OUT_MULT_ACCOUNT;
console.log(ready, notReady, kicked, multipleAccount);

const tim = TIM.create({ SDKAppID: 1400000000 });
tim.on(TIM.EVENT.KICKED_OUT, (event) => {
  const type: 'multipleAccount' | 'multipleDevice' | 'userSigExpired' | 'REST_API_Kick' = event.data.type;
  console.log(type);
});
tim.login({ userID: 'alice', userSig: 'sig' }).then((imResponse) => {
  const status: string = imResponse.data.actionStatus;
  console.log(status);
}, (imError: { code: number }) => console.log(imError.code));

// The SDK's error codes by name, as literal types; the ERROR event's data has `code`.
const originRefused: 2806 = TIM.ERROR_CODE.ORIGIN_NOT_ALLOWED;
const serverFull: 2807 = TIM.ERROR_CODE.SERVER_FULL;
tim.on(TIM.EVENT.ERROR, (event) => {
  if (event.data.code === TIM.ERROR_CODE.SERVER_UNAVAILABLE) console.log(event.data.message);
});
console.log(originRefused, serverFull);
// @ts-expect-error there is no such code
console.log(TIM.ERROR_CODE.NO_SUCH_CODE);

// From a <script src> page: the global the script-tag build defines, typed from the package.
declare const GlobalTIM: typeof import('tim-wasm').default;
const fromScript: 2810 = GlobalTIM.ERROR_CODE.LOGIN_TOO_FAST;
console.log(fromScript);

// @ts-expect-error login needs a userSig
tim.login({ userID: 'alice' });
// @ts-expect-error TIM.create needs its options
TIM.create();
// @ts-expect-error there is no such event
console.log(TIM.EVENT.NO_SUCH_EVENT);
