//! Every way a REST call can fail, each mapped to the documented code (`docs/rest.md`). The
//! `Display` text is the `ErrorInfo` the caller sees: it names what to fix.

use tim_proto::{
    ERR_ACCOUNT_NOT_FOUND, ERR_INTERNAL, ERR_INVALID_PARAMETERS, ERR_NEED_ADMIN, ERR_REST_BAD_JSON,
    ERR_REST_BAD_URL, ERR_REST_FREQ_APP, ERR_REST_NO_SDKAPPID, ERR_REST_NO_SUCH_API,
    ERR_REST_UNKNOWN_SDKAPPID, ERR_REST_WRONG_TYPE, ERR_SERVER_TIMEOUT, ERR_USERSIG_EMPTY,
    ERR_USERSIG_EXPIRED, ERR_USERSIG_INVALID,
};
use tim_usersig::UserSigError;

use crate::store::StoreError;

/// Why a REST call was refused (`ActionStatus: "FAIL"`). Nothing was changed by a call that
/// ends in one of these, except [`RestError::Timeout`], whose outcome is unknown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestError {
    /// 60002: the query string does not parse, or a parameter is duplicated or malformed.
    #[error("invalid URL: {0}")]
    BadUrl(String),
    /// 60003.
    #[error("the request body is not valid JSON: {0}")]
    BadJson(String),
    /// 60006.
    #[error("sdkappid {0} is unknown to this server")]
    UnknownSdkAppId(String),
    /// 60009.
    #[error("no such API: {0}")]
    NoSuchApi(String),
    /// 60011: over the per-app call rate; the call had no effect.
    #[error(
        "REST call frequency over the limit of {0} calls per second for this app; retry later"
    )]
    RateLimited(u32),
    /// 60012.
    #[error("sdkappid is missing from the URL")]
    MissingSdkAppId,
    /// 60015: an account field (a UserID) is not a JSON string, or a list of them not an array.
    #[error("{0} has the wrong JSON type: it must be {1}")]
    WrongType(String, &'static str),
    /// 70403: `identifier` is missing or not this app's admin.
    #[error("the request needs app admin permission: identifier must be the app admin")]
    NotAdmin,
    /// 70002.
    #[error("usersig is missing from the URL")]
    MissingUserSig,
    /// The admin UserSig's own code: 70001 / 70003 / 70009 / 70013 / 70014.
    #[error("admin UserSig refused: {0}")]
    AdminUserSig(UserSigError),
    /// 70003: the admin UserSig's `TLS.time` is ahead of the server's clock.
    #[error("admin UserSig refused: TLS.time is {0} s ahead of the server's clock")]
    AdminUserSigFromTheFuture(u64),
    /// 70001: the admin UserSig was issued at or before a REST kick of the admin.
    #[error("admin UserSig refused: issued at or before a kick of the admin account")]
    AdminUserSigKicked,
    /// 70402: a required field is missing, a value is invalid, or a limit is exceeded.
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// 70107.
    #[error("account {0} does not exist")]
    AccountNotFound(String),
    /// 70169: the store did not answer in time. The change may still be applied.
    #[error("server timeout, try again later")]
    Timeout,
    /// 70500.
    #[error("internal server error, try again later")]
    Store(StoreError),
    /// 70500: a task of the call failed.
    #[error("internal server error, try again later")]
    Internal,
    /// 70169: cluster mode, and Redis did not answer. Nothing was changed unless Redis
    /// applied it just before the link broke: retrying is safe (every call is idempotent).
    #[error("session store unreachable, try again later")]
    Unavailable,
}

impl From<crate::backend::BackendError> for RestError {
    fn from(e: crate::backend::BackendError) -> Self {
        match e {
            crate::backend::BackendError::Store(e) => RestError::Store(e),
            e @ crate::backend::BackendError::Unavailable(_) => {
                tracing::warn!(error = %e, "REST call not decided");
                RestError::Unavailable
            }
        }
    }
}

impl RestError {
    /// The `ErrorCode` of the answer.
    pub fn code(&self) -> u32 {
        match self {
            RestError::BadUrl(_) => ERR_REST_BAD_URL,
            RestError::BadJson(_) => ERR_REST_BAD_JSON,
            RestError::UnknownSdkAppId(_) => ERR_REST_UNKNOWN_SDKAPPID,
            RestError::NoSuchApi(_) => ERR_REST_NO_SUCH_API,
            RestError::RateLimited(_) => ERR_REST_FREQ_APP,
            RestError::MissingSdkAppId => ERR_REST_NO_SDKAPPID,
            RestError::WrongType(..) => ERR_REST_WRONG_TYPE,
            RestError::NotAdmin => ERR_NEED_ADMIN,
            RestError::MissingUserSig => ERR_USERSIG_EMPTY,
            RestError::AdminUserSig(e) => e.code(),
            RestError::AdminUserSigFromTheFuture(_) => ERR_USERSIG_INVALID,
            RestError::AdminUserSigKicked => ERR_USERSIG_EXPIRED,
            RestError::InvalidParameters(_) => ERR_INVALID_PARAMETERS,
            RestError::AccountNotFound(_) => ERR_ACCOUNT_NOT_FOUND,
            RestError::Timeout | RestError::Unavailable => ERR_SERVER_TIMEOUT,
            RestError::Store(_) | RestError::Internal => ERR_INTERNAL,
        }
    }

    /// A 70402 error.
    pub fn invalid(message: impl Into<String>) -> RestError {
        RestError::InvalidParameters(message.into())
    }
}

impl From<StoreError> for RestError {
    fn from(e: StoreError) -> Self {
        RestError::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let cases = [
            (RestError::BadUrl("x".into()), 60002),
            (RestError::BadJson("x".into()), 60003),
            (RestError::UnknownSdkAppId("1".into()), 60006),
            (RestError::NoSuchApi("x".into()), 60009),
            (RestError::RateLimited(200), 60011),
            (RestError::MissingSdkAppId, 60012),
            (RestError::WrongType("UserID".into(), "a string"), 60015),
            (RestError::NotAdmin, 70403),
            (RestError::MissingUserSig, 70002),
            (RestError::AdminUserSig(UserSigError::Expired), 70001),
            (RestError::AdminUserSig(UserSigError::NotBase64), 70003),
            (RestError::AdminUserSig(UserSigError::BadSignature), 70009),
            (
                RestError::AdminUserSig(UserSigError::IdentifierMismatch),
                70013,
            ),
            (
                RestError::AdminUserSig(UserSigError::SdkAppIdMismatch),
                70014,
            ),
            (RestError::AdminUserSigKicked, 70001),
            (RestError::AdminUserSigFromTheFuture(5), 70003),
            (RestError::invalid("x"), 70402),
            (RestError::AccountNotFound("a".into()), 70107),
            (RestError::Timeout, 70169),
            (RestError::Store(StoreError::Unavailable), 70500),
            (RestError::Internal, 70500),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn store_details_never_reach_the_caller() {
        let e = RestError::from(StoreError::Sqlite("disk I/O error at /secret/path".into()));
        assert_eq!(e.to_string(), "internal server error, try again later");
    }
}
