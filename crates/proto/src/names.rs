//! Event names, kicked-out types, net states and platforms, with the exact string values of
//! `tim-js-sdk` (see `shared/REFERENCE.md`).

use serde::{Deserialize, Serialize};

/// `TIM.EVENT.*`: `(key, value)` pairs, in the order the SDK exposes them.
pub const EVENTS: &[(&str, &str)] = &[
    ("SDK_READY", EVENT_SDK_READY),
    ("SDK_NOT_READY", EVENT_SDK_NOT_READY),
    ("KICKED_OUT", EVENT_KICKED_OUT),
    ("NET_STATE_CHANGE", EVENT_NET_STATE_CHANGE),
    ("ERROR", EVENT_ERROR),
    ("SDK_DESTROY", EVENT_SDK_DESTROY),
];
pub const EVENT_SDK_READY: &str = "sdkStateReady";
pub const EVENT_SDK_NOT_READY: &str = "sdkStateNotReady";
pub const EVENT_KICKED_OUT: &str = "kickedOut";
pub const EVENT_NET_STATE_CHANGE: &str = "netStateChange";
pub const EVENT_ERROR: &str = "error";
/// Emitted once `destroy()` has finished, with `{ SDKAppID }` (as `tim-js-sdk` 2.27.6 does).
pub const EVENT_SDK_DESTROY: &str = "sdkDestroy";

/// Why an instance was kicked out. Serialized with `TIM.TYPES` string values, so the same
/// text travels on the wire and reaches `event.data.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KickReason {
    /// Same platform, over the instance limit (e.g. another tab).
    #[serde(rename = "multipleAccount")]
    MultipleAccount,
    /// Another platform, per the multi-platform policy.
    #[serde(rename = "multipleDevice")]
    MultipleDevice,
    #[serde(rename = "userSigExpired")]
    UserSigExpired,
    #[serde(rename = "REST_API_Kick")]
    RestApi,
}

impl KickReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            KickReason::MultipleAccount => "multipleAccount",
            KickReason::MultipleDevice => "multipleDevice",
            KickReason::UserSigExpired => "userSigExpired",
            KickReason::RestApi => "REST_API_Kick",
        }
    }
    /// The SDK error code a pending call rejects with when this kick ends the session.
    pub const fn sdk_code(self) -> u32 {
        match self {
            KickReason::MultipleDevice => SDK_KICKED_OUT_MULT_DEVICE,
            KickReason::MultipleAccount => SDK_KICKED_OUT_MULT_ACCOUNT,
            KickReason::UserSigExpired => SDK_KICKED_OUT_USERSIG_EXPIRED,
            KickReason::RestApi => SDK_KICKED_OUT_REST_API,
        }
    }
}

/// `NET_STATE_CHANGE` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetState {
    Connected,
    Connecting,
    Disconnected,
}

impl NetState {
    pub const fn as_str(self) -> &'static str {
        match self {
            NetState::Connected => "connected",
            NetState::Connecting => "connecting",
            NetState::Disconnected => "disconnected",
        }
    }
}

/// `TIM.TYPES.*`: `(key, value)` pairs.
pub const TYPES: &[(&str, &str)] = &[
    (
        "KICKED_OUT_MULT_ACCOUNT",
        KickReason::MultipleAccount.as_str(),
    ),
    (
        "KICKED_OUT_MULT_DEVICE",
        KickReason::MultipleDevice.as_str(),
    ),
    (
        "KICKED_OUT_USERSIG_EXPIRED",
        KickReason::UserSigExpired.as_str(),
    ),
    ("KICKED_OUT_REST_API", KickReason::RestApi.as_str()),
    ("NET_STATE_CONNECTED", NetState::Connected.as_str()),
    ("NET_STATE_CONNECTING", NetState::Connecting.as_str()),
    ("NET_STATE_DISCONNECTED", NetState::Disconnected.as_str()),
];

/// The platform an instance logs in from; limits and the multi-platform policy are per platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Platform {
    Web,
    Android,
    #[serde(rename = "iPhone")]
    IPhone,
    #[serde(rename = "iPad")]
    IPad,
    Windows,
    Mac,
}

impl Platform {
    pub const ALL: [Platform; 6] = [
        Platform::Web,
        Platform::Android,
        Platform::IPhone,
        Platform::IPad,
        Platform::Windows,
        Platform::Mac,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Web => "Web",
            Platform::Android => "Android",
            Platform::IPhone => "iPhone",
            Platform::IPad => "iPad",
            Platform::Windows => "Windows",
            Platform::Mac => "Mac",
        }
    }
    /// Android, iPhone, iPad: the "mobile" class of the three-platform policy.
    pub const fn is_mobile(self) -> bool {
        matches!(self, Platform::Android | Platform::IPhone | Platform::IPad)
    }
    /// Windows, Mac: the "desktop" class of the three-platform policy.
    pub const fn is_desktop(self) -> bool {
        matches!(self, Platform::Windows | Platform::Mac)
    }
    /// Case-insensitive parse, for CLI flags.
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }
}

/// A UserID is 1..=32 bytes of `A-Z a-z 0-9 _ -` (seed 001).
pub fn is_valid_user_id(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

use crate::codes::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rules() {
        assert!(is_valid_user_id("a"));
        assert!(is_valid_user_id("user_01-A"));
        assert!(is_valid_user_id(&"x".repeat(32)));
        assert!(!is_valid_user_id(""));
        assert!(!is_valid_user_id(&"x".repeat(33)));
        assert!(!is_valid_user_id("a b"));
        for bad in ["é", "用户", "a.b", "at@host", "tab\t", "a/b", "a+b"] {
            assert!(!is_valid_user_id(bad), "{bad:?}");
        }
        for ok in ["0", "_", "-", "xiaojun"] {
            assert!(is_valid_user_id(ok), "{ok}");
        }
    }

    #[test]
    fn names_match_reference() {
        assert_eq!(
            serde_json::to_string(&KickReason::RestApi).unwrap(),
            "\"REST_API_Kick\""
        );
        assert_eq!(
            serde_json::to_string(&Platform::IPhone).unwrap(),
            "\"iPhone\""
        );
        for p in Platform::ALL {
            assert_eq!(Platform::parse(&p.as_str().to_ascii_uppercase()), Some(p));
        }
        assert_eq!(EVENTS.len(), 6);
        assert_eq!(TYPES.len(), 7);
    }
}
