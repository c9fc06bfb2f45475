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

/**
 * The SDK-side error codes, by name (`TIM.ERROR_CODE`). Server-side failures carry the
 * server's code instead (70001 UserSig expired, 70009 bad signature, 70050 UserSig checks
 * rate-limited, 70169 try again later, ...).
 */
export interface ErrorCodes {
  /** `login` without a valid SDKAppID in `TIM.create`. */
  readonly NO_SDKAPPID: 2000;
  /** `login` with a missing or invalid userID. */
  readonly NO_IDENTIFIER: 2002;
  /** `login` without a userSig. */
  readonly NO_USERSIG: 2003;
  /** `logout` when not logged in. */
  readonly USER_NOT_LOGGED_IN: 2024;
  /** `login` while a login is under way on this instance. */
  readonly REPEAT_LOGIN: 2025;
  /** The server could not be reached (or no WebSocket could be opened: see the message). */
  readonly NETWORK_ERROR: 2800;
  /** No answer to `login` within 10 s. */
  readonly NETWORK_TIMEOUT: 2801;
  /** `login` while the browser reports itself offline. */
  readonly NO_NETWORK: 2805;
  /** Close 4006: timd refused this page's origin; start it with `--allowed-origins <origin>`. Not retried. */
  readonly ORIGIN_NOT_ALLOWED: 2806;
  /** Close 4007: timd is full (`--max-connections`). */
  readonly SERVER_FULL: 2807;
  /** Close 4008: too many connections from this address (`--max-connections-per-addr`). */
  readonly TOO_MANY_CONNECTIONS: 2808;
  /** Close 4009: connecting too fast from this address (`--connection-rate-per-addr`). */
  readonly CONNECTING_TOO_FAST: 2809;
  /** Close 4010: logging in too fast from this address (`--login-rate-per-addr`). */
  readonly LOGIN_TOO_FAST: 2810;
  /** Close 1013: timd cannot decide now (cluster mode, its Redis unreachable). */
  readonly SERVER_UNAVAILABLE: 2813;
  /** The instance went away before the call completed. */
  readonly UNCAUGHT_ERROR: 2903;
  /** Any call after `destroy()`. */
  readonly INVALID_OPERATION: 2905;
  /** A login under way ended by a kick of this type. */
  readonly KICKED_OUT_MULT_DEVICE: 3002;
  readonly KICKED_OUT_MULT_ACCOUNT: 3003;
  readonly KICKED_OUT_USERSIG_EXPIRED: 3004;
  /** A login under way ended by `logout()`. */
  readonly LOGGED_OUT: 3005;
  readonly KICKED_OUT_REST_API: 3006;
}

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
  /**
   * Outside any call: a refused reconnect while logged in (`TIM.ERROR_CODE.SERVER_FULL`, …,
   * once per outage and code; the SDK keeps retrying, except after `ORIGIN_NOT_ALLOWED`,
   * which ends the session with `SDK_NOT_READY`), or a failed login after a reconnect.
   */
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
  /**
   * The SDK-side error codes by name, e.g. `TIM.ERROR_CODE.ORIGIN_NOT_ALLOWED` (2806): what
   * `IMError.code` and the `ERROR` event's `data.code` are compared with.
   */
  static readonly ERROR_CODE: ErrorCodes;
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
