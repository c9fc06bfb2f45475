// Type declarations for tim-wasm (the login surface of tim-js-sdk).

export interface TIMOptions {
  /**
   * Your app's SDKAppID (a number, or a string of its digits). Missing or invalid: `login`
   * rejects with code 2000.
   */
  SDKAppID: number | string;
  /** timd's base URL (`ws://`, `wss://`, `http://`, `https://`). Default: the page's origin. */
  serverURL?: string;
  /**
   * Returns a fresh UserSig (or a Promise of one) for the logged-in user: the SDK calls it ahead
   * of the current UserSig's expiry and renews the session without dropping it.
   */
  getUserSig?: () => string | Promise<string>;
}

export interface LoginOptions {
  userID: string;
  userSig: string;
}

export interface LoginData {
  actionStatus: 'OK';
  errorCode: 0;
  errorInfo: string;
  /** `true` when this user was already logged in on this instance. */
  repeatLogin?: true;
}

export interface IMResponse<T = Record<string, never>> {
  code: 0;
  data: T;
}

/** `getLoginStatus()`: 1 logged in, 2 logging in, 3 logged out (V2TIM's values). */
export type LoginStatus = 1 | 2 | 3;

/** What every Promise rejects with: an `Error` carrying a numeric `code`. */
export interface IMError extends Error {
  code: number;
  message: string;
}

export type EventName =
  | 'sdkStateReady'
  | 'sdkStateNotReady'
  | 'kickedOut'
  | 'netStateChange'
  | 'error'
  | 'sdkDestroy';

export type KickedOutType = 'multipleAccount' | 'multipleDevice' | 'userSigExpired' | 'REST_API_Kick';
export type NetState = 'connected' | 'connecting' | 'disconnected';

export interface EventDataMap {
  sdkStateReady: undefined;
  sdkStateNotReady: undefined;
  kickedOut: { type: KickedOutType };
  netStateChange: { state: NetState };
  error: { code: number; message: string };
  sdkDestroy: { SDKAppID: number };
}

export interface TIMEvent<N extends EventName = EventName> {
  name: N;
  data: EventDataMap[N];
}

export declare class TIM {
  private constructor();
  /**
   * The instance for `options.SDKAppID`: the same one on every call until it is destroyed
   * (as with tim-js-sdk), so the modules of a page share one login.
   */
  static create(options: TIMOptions): TIM;
  static readonly EVENT: {
    readonly SDK_READY: 'sdkStateReady';
    readonly SDK_NOT_READY: 'sdkStateNotReady';
    readonly KICKED_OUT: 'kickedOut';
    readonly NET_STATE_CHANGE: 'netStateChange';
    readonly ERROR: 'error';
    readonly SDK_DESTROY: 'sdkDestroy';
  };
  /** The package's version. */
  static readonly VERSION: string;
  static readonly TYPES: {
    readonly KICKED_OUT_MULT_ACCOUNT: 'multipleAccount';
    readonly KICKED_OUT_MULT_DEVICE: 'multipleDevice';
    readonly KICKED_OUT_USERSIG_EXPIRED: 'userSigExpired';
    readonly KICKED_OUT_REST_API: 'REST_API_Kick';
    readonly NET_STATE_CONNECTED: 'connected';
    readonly NET_STATE_CONNECTING: 'connecting';
    readonly NET_STATE_DISCONNECTED: 'disconnected';
  };
  login(options: LoginOptions): Promise<IMResponse<LoginData>>;
  logout(): Promise<IMResponse>;
  /** Logs out, closes the connection, emits `SDK_DESTROY`, then drops every listener and timer. */
  destroy(): Promise<IMResponse>;
  on<N extends EventName>(eventName: N, handler: (event: TIMEvent<N>) => void, context?: unknown): void;
  /** Like `on`, for the next such event only. */
  once<N extends EventName>(eventName: N, handler: (event: TIMEvent<N>) => void, context?: unknown): void;
  off<N extends EventName>(eventName: N, handler: (event: TIMEvent<N>) => void, context?: unknown): void;
  /** The logged-in UserID, or `''`. */
  getLoginUser(): string;
  isReady(): boolean;
  getLoginStatus(): LoginStatus;
  /** 0 logs everything, 4 nothing. */
  setLogLevel(level: 0 | 1 | 2 | 3 | 4): void;
}

export default TIM;
