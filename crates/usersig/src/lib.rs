//! UserSig (TLSSigAPIv2): the HMAC-SHA256 login ticket that an app server issues for one UserID.
//!
//! Wire form: a JSON document, zlib-compressed, base64-encoded with Tencent's URL-safe
//! substitutions (`+`→`*`, `/`→`-`, `=`→`_`). The signature covers a fixed text built from the
//! claims, not the JSON itself, which is why official generators can differ in key order,
//! whitespace and zlib output while all producing valid tickets.
//!
//! The API is pure (the caller passes the time) so it runs unchanged in the server and in
//! wasm32-unknown-unknown browser tests, where there is no OS clock or randomness.
//!
//! ```
//! let sig = tim_usersig::generate(1400000000, "secret", "alice", 1_700_000_000, 86400);
//! let claims = tim_usersig::verify(&sig, "secret", 1400000000, "alice", 1_700_000_001).unwrap();
//! assert_eq!(claims.identifier, "alice");
//! let err = tim_usersig::verify(&sig, "secret", 1400000000, "bob", 1_700_000_001).unwrap_err();
//! assert_eq!(err.code(), 70013);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;

/// Longest UserSig text accepted. Real ones are ~200–300 characters; the cap keeps a hostile
/// client from making the server base64-decode and inflate megabytes.
pub const MAX_USERSIG_LEN: usize = 8192;

/// Most bytes a UserSig may inflate to. Bounds the work a zlib bomb can cause.
pub const MAX_INFLATED_LEN: usize = 8192;

/// The only document version this crate understands (TLSSigAPIv2).
const VERSION: &str = "2.0";

/// Standard alphabet, but tolerant of missing padding and non-zero trailing bits, as Node's
/// `Buffer.from(s, 'base64')` (which Tencent's own tools use) is.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// For `TLS.sig`: padding optional, but non-zero trailing bits rejected, so that every
/// distinct signature text is a distinct MAC (no "tampered but still valid" spellings).
const SIG_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// What a UserSig asserts. `time` is the issue time (unix seconds), `expire` its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSigClaims {
    /// The UserID the ticket was issued for.
    pub identifier: String,
    /// The app the ticket belongs to.
    pub sdkappid: u32,
    /// Issue time, unix seconds.
    pub time: u64,
    /// Seconds the ticket stays valid after `time`.
    pub expire: u64,
    /// Optional opaque bytes (TRTC's PrivateMapKey), signed along with the rest.
    pub userbuf: Option<Vec<u8>>,
}

impl UserSigClaims {
    /// First unix second at which the ticket is no longer valid (saturating, so a huge
    /// `expire` means "never" rather than wrapping into the past).
    pub fn expires_at(&self) -> u64 {
        self.time.saturating_add(self.expire)
    }
}

/// Why a UserSig was refused. [`UserSigError::code`] gives the server error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSigError {
    /// The UserSig is the empty string.
    Empty,
    /// Not base64 in Tencent's URL-safe variant (or the standard one).
    NotBase64,
    /// Decodes, but is not a zlib stream.
    NotZlib,
    /// Longer than [`MAX_USERSIG_LEN`] as text, or inflates beyond [`MAX_INFLATED_LEN`].
    TooLarge,
    /// Inflates, but is not a JSON object.
    NotJson,
    /// A required field is absent, or present with a value that cannot be what it should be.
    MissingField(&'static str),
    /// `TLS.ver` is not `"2.0"`.
    BadVersion,
    /// The HMAC does not match: wrong key, or the UserSig was tampered with.
    BadSignature,
    /// Issued for another UserID than the one logging in.
    IdentifierMismatch,
    /// Issued for another SDKAppID.
    SdkAppIdMismatch,
    /// Past `TLS.time + TLS.expire`.
    Expired,
}

impl UserSigError {
    /// The server-side error code (70001 expired, 70002 empty, 70003 undecodable,
    /// 70009 bad signature, 70013 identifier mismatch, 70014 SDKAppID mismatch).
    pub fn code(&self) -> u32 {
        match self {
            UserSigError::Empty => 70002,
            UserSigError::NotBase64
            | UserSigError::NotZlib
            | UserSigError::TooLarge
            | UserSigError::NotJson
            | UserSigError::MissingField(_)
            | UserSigError::BadVersion => 70003,
            UserSigError::BadSignature => 70009,
            UserSigError::IdentifierMismatch => 70013,
            UserSigError::SdkAppIdMismatch => 70014,
            UserSigError::Expired => 70001,
        }
    }

    /// A human-readable reason naming exactly what is wrong, so a developer can fix their
    /// UserSig generation from the error text alone.
    pub fn message(&self) -> String {
        match self {
            UserSigError::Empty => "UserSig is empty".into(),
            UserSigError::NotBase64 => "UserSig is not valid base64url".into(),
            UserSigError::NotZlib => "UserSig does not inflate (zlib)".into(),
            UserSigError::TooLarge => format!(
                "UserSig is longer than {MAX_USERSIG_LEN} characters or inflates beyond {MAX_INFLATED_LEN} bytes"
            ),
            UserSigError::NotJson => "UserSig is not JSON".into(),
            UserSigError::MissingField(name) => {
                format!("UserSig lacks field {name} (absent or of the wrong type)")
            }
            UserSigError::BadVersion => "UserSig TLS.ver is not \"2.0\"".into(),
            UserSigError::BadSignature => {
                "signature check failed: wrong key or tampered UserSig".into()
            }
            UserSigError::IdentifierMismatch => {
                "UserSig identifier does not match the UserID".into()
            }
            UserSigError::SdkAppIdMismatch => "UserSig SDKAppID does not match".into(),
            UserSigError::Expired => "UserSig expired".into(),
        }
    }
}

impl fmt::Display for UserSigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for UserSigError {}

/// Generate a UserSig. Pure: the caller passes the issue time `time` (unix seconds), so this
/// works without a clock (wasm) and is deterministic in tests.
pub fn generate(sdkappid: u32, key: &str, identifier: &str, time: u64, expire: u64) -> String {
    generate_inner(sdkappid, key, identifier, time, expire, None)
}

/// Generate a UserSig carrying `userbuf` (signed, stored base64 in `TLS.userbuf`).
/// An empty `userbuf` is still emitted, as the official generators do.
pub fn generate_with_userbuf(
    sdkappid: u32,
    key: &str,
    identifier: &str,
    time: u64,
    expire: u64,
    userbuf: &[u8],
) -> String {
    generate_inner(sdkappid, key, identifier, time, expire, Some(userbuf))
}

/// The document in the key order of Tencent's Node generator (order is irrelevant to verifiers).
#[derive(Serialize)]
struct SigDoc<'a> {
    #[serde(rename = "TLS.ver")]
    ver: &'a str,
    #[serde(rename = "TLS.identifier")]
    identifier: &'a str,
    #[serde(rename = "TLS.sdkappid")]
    sdkappid: u32,
    #[serde(rename = "TLS.time")]
    time: u64,
    #[serde(rename = "TLS.expire")]
    expire: u64,
    #[serde(rename = "TLS.userbuf", skip_serializing_if = "Option::is_none")]
    userbuf: Option<&'a str>,
    #[serde(rename = "TLS.sig")]
    sig: &'a str,
}

fn generate_inner(
    sdkappid: u32,
    key: &str,
    identifier: &str,
    time: u64,
    expire: u64,
    userbuf: Option<&[u8]>,
) -> String {
    let userbuf_b64 = userbuf.map(|b| STANDARD.encode(b));
    let mac = mac_for(
        key,
        identifier,
        sdkappid,
        time,
        expire,
        userbuf_b64.as_deref(),
    );
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    let doc = SigDoc {
        ver: VERSION,
        identifier,
        sdkappid,
        time,
        expire,
        userbuf: userbuf_b64.as_deref(),
        sig: &sig,
    };
    let json = serde_json::to_vec(&doc).expect("a struct of strings and integers serializes");
    // Level 6 is zlib's default, what Node and Python use.
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&json, 6);
    encode_base64url(&compressed)
}

/// TLSSigAPIv2's URL-safe spelling of standard base64: `+` `/` `=` become `*` `-` `_`.
pub fn encode_base64url(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

/// HMAC-SHA256 keyed with the secret key's UTF-8 bytes (not its hex decoding) over the
/// fixed content lines; the line order is part of the format.
fn mac_for(
    key: &str,
    identifier: &str,
    sdkappid: u32,
    time: u64,
    expire: u64,
    userbuf_b64: Option<&str>,
) -> HmacSha256 {
    content_mac(keyed(key), identifier, sdkappid, time, expire, userbuf_b64)
}

fn keyed(key: &str) -> HmacSha256 {
    HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length")
}

/// `mac` (keyed, nothing signed yet) over the content lines.
fn content_mac(
    mut mac: HmacSha256,
    identifier: &str,
    sdkappid: u32,
    time: u64,
    expire: u64,
    userbuf_b64: Option<&str>,
) -> HmacSha256 {
    let _ = write!(
        MacText(&mut mac),
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(ub) = userbuf_b64 {
        mac.update(b"TLS.userbuf:");
        mac.update(ub.as_bytes());
        mac.update(b"\n");
    }
    mac
}

/// Formats text straight into a MAC (no intermediate string).
struct MacText<'a>(&'a mut HmacSha256);

impl fmt::Write for MacText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// A decoded document: the claims plus what the signature check needs verbatim.
struct Decoded {
    claims: UserSigClaims,
    sig: String,
    /// `TLS.userbuf` exactly as written: it is what was signed, even if not canonical base64.
    userbuf_b64: Option<String>,
}

/// Decode without checking the signature: for tooling, and to read `time` for kick checks.
/// Never trust the result for authentication; use [`verify`].
pub fn decode(usersig: &str) -> Result<UserSigClaims, UserSigError> {
    decode_inner(usersig).map(|d| d.claims)
}

fn decode_inner(usersig: &str) -> Result<Decoded, UserSigError> {
    if usersig.is_empty() {
        return Err(UserSigError::Empty);
    }
    if usersig.len() > MAX_USERSIG_LEN {
        return Err(UserSigError::TooLarge);
    }
    // Undo Tencent's substitutions; the standard characters are accepted too, since they are
    // unambiguous and a UserSig sometimes passes through tools that "fix" it.
    let std_b64: Vec<u8> = usersig
        .bytes()
        .map(|b| match b {
            b'*' => b'+',
            b'-' => b'/',
            b'_' => b'=',
            b => b,
        })
        .collect();
    let compressed = LENIENT_B64
        .decode(&std_b64)
        .map_err(|_| UserSigError::NotBase64)?;
    inflate(&compressed, |json| {
        let doc: Doc = serde_json::from_slice(json).map_err(|_| UserSigError::NotJson)?;
        doc.decoded()
    })
}

/// A JSON value of the document, as far as the checks need to tell values apart (strings
/// borrowed from the inflated text when they hold no escapes).
enum Raw<'a> {
    Null,
    Str(Cow<'a, str>),
    /// A non-negative integer that fits a u64.
    Uint(u64),
    /// Anything else: a float, a negative number, a boolean, an array, an object.
    Other,
}

/// The document's fields this crate reads; a field named twice counts with its last value
/// (as in a JSON object read into a map), other fields are ignored.
#[derive(Default)]
struct Doc<'a> {
    ver: Option<Raw<'a>>,
    identifier: Option<Raw<'a>>,
    sdkappid: Option<Raw<'a>>,
    time: Option<Raw<'a>>,
    expire: Option<Raw<'a>>,
    sig: Option<Raw<'a>>,
    userbuf: Option<Raw<'a>>,
}

impl Doc<'_> {
    /// The checks of the document's fields, in their order.
    fn decoded(self) -> Result<Decoded, UserSigError> {
        match self.ver {
            None | Some(Raw::Null) => return Err(UserSigError::MissingField("TLS.ver")),
            Some(Raw::Str(v)) if v == VERSION => {}
            Some(_) => return Err(UserSigError::BadVersion),
        }
        let identifier = match self.identifier {
            Some(Raw::Str(s)) => s.into_owned(),
            // Lenient: a numeric UserID written as a JSON number signs as its decimal text.
            Some(Raw::Uint(n)) => n.to_string(),
            _ => return Err(UserSigError::MissingField("TLS.identifier")),
        };
        let sdkappid = u32::try_from(uint_field(self.sdkappid, "TLS.sdkappid")?)
            .map_err(|_| UserSigError::MissingField("TLS.sdkappid"))?;
        let time = uint_field(self.time, "TLS.time")?;
        let expire = uint_field(self.expire, "TLS.expire")?;
        let sig = match self.sig {
            Some(Raw::Str(s)) => s.into_owned(),
            _ => return Err(UserSigError::MissingField("TLS.sig")),
        };
        let (userbuf, userbuf_b64) = match self.userbuf {
            None | Some(Raw::Null) => (None, None),
            Some(Raw::Str(s)) => {
                let bytes = LENIENT_B64
                    .decode(s.as_bytes())
                    .map_err(|_| UserSigError::MissingField("TLS.userbuf"))?;
                (Some(bytes), Some(s.into_owned()))
            }
            Some(_) => return Err(UserSigError::MissingField("TLS.userbuf")),
        };
        Ok(Decoded {
            claims: UserSigClaims {
                identifier,
                sdkappid,
                time,
                expire,
                userbuf,
            },
            sig,
            userbuf_b64,
        })
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DocVisitor;
        impl<'de> Visitor<'de> for DocVisitor {
            type Value = Doc<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
                let mut doc = Doc::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Ver => &mut doc.ver,
                        Key::Identifier => &mut doc.identifier,
                        Key::SdkAppId => &mut doc.sdkappid,
                        Key::Time => &mut doc.time,
                        Key::Expire => &mut doc.expire,
                        Key::Sig => &mut doc.sig,
                        Key::Userbuf => &mut doc.userbuf,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(doc)
            }
        }
        d.deserialize_map(DocVisitor)
    }
}

/// A field name of the document.
enum Key {
    Ver,
    Identifier,
    SdkAppId,
    Time,
    Expire,
    Sig,
    Userbuf,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(match name {
                    "TLS.ver" => Key::Ver,
                    "TLS.identifier" => Key::Identifier,
                    "TLS.sdkappid" => Key::SdkAppId,
                    "TLS.time" => Key::Time,
                    "TLS.expire" => Key::Expire,
                    "TLS.sig" => Key::Sig,
                    "TLS.userbuf" => Key::Userbuf,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Raw<'de>, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Raw<'de>, E> {
                Ok(Raw::Null)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Raw<'de>, E> {
                Ok(Raw::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Raw<'de>, E> {
                Ok(Raw::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Raw<'de>, E> {
                Ok(Raw::Str(Cow::Owned(s)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Raw<'de>, E> {
                Ok(Raw::Uint(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Raw<'de>, E> {
                Ok(u64::try_from(n).map_or(Raw::Other, Raw::Uint))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Raw<'de>, E> {
                Ok(Raw::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Raw<'de>, E> {
                Ok(Raw::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Raw::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Raw::Other)
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

std::thread_local! {
    /// Each thread's inflate state (~42 KB with its window) and output buffer, reset for
    /// every UserSig rather than allocated and initialized anew.
    static INFLATER: RefCell<Option<(zlib_rs::Inflate, Box<[u8]>)>> =
        const { RefCell::new(None) };
}

/// Inflates the zlib stream `compressed` (at most [`MAX_INFLATED_LEN`] bytes out) and hands
/// the result to `then`. Answers as zlib's `uncompress` does: the whole stream or an error,
/// trailing bytes after it ignored.
fn inflate<T>(
    compressed: &[u8],
    then: impl FnOnce(&[u8]) -> Result<T, UserSigError>,
) -> Result<T, UserSigError> {
    INFLATER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let (inflater, out) = slot.get_or_insert_with(|| {
                (
                    zlib_rs::Inflate::new(true, MAX_WBITS),
                    vec![0; MAX_INFLATED_LEN].into_boxed_slice(),
                )
            });
            inflater.reset(true);
            let n = inflate_with(inflater, compressed, out)?;
            then(&out[..n])
        }
        // Not reentrant (`then` inflates nothing), but a fresh state would do as well.
        Err(_) => {
            let mut out = vec![0; MAX_INFLATED_LEN];
            let n = inflate_with(
                &mut zlib_rs::Inflate::new(true, MAX_WBITS),
                compressed,
                &mut out,
            )?;
            then(&out[..n])
        }
    })
}

/// zlib's largest window (32 KiB): what `uncompress` accepts.
const MAX_WBITS: u8 = 15;

/// One `inflate` call over the whole input into `out`: the bytes written, or why not.
fn inflate_with(
    inflater: &mut zlib_rs::Inflate,
    compressed: &[u8],
    out: &mut [u8],
) -> Result<usize, UserSigError> {
    let status = inflater.decompress(compressed, out, zlib_rs::InflateFlush::NoFlush);
    let written = usize::try_from(inflater.total_out()).unwrap_or(usize::MAX);
    match status {
        Ok(zlib_rs::Status::StreamEnd) => Ok(written),
        // As `uncompress` tells them apart: stopped with the output full, the stream inflates
        // beyond the cap; with room left, the input ended before the stream did.
        Ok(_) if written >= out.len() => Err(UserSigError::TooLarge),
        Ok(_) | Err(_) => Err(UserSigError::NotZlib),
    }
}

/// A non-negative integer field. All official generators write JSON numbers; a string of
/// decimal digits is accepted too, as Tencent's server is lenient there (some third-party
/// generators write every value as a string).
fn uint_field(value: Option<Raw<'_>>, name: &'static str) -> Result<u64, UserSigError> {
    match value {
        Some(Raw::Uint(n)) => Some(n),
        Some(Raw::Str(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
    .ok_or(UserSigError::MissingField(name))
}

/// Full verification at `now` (unix seconds). Checks run in a fixed order — empty, decode,
/// SDKAppID, identifier, signature, expiry — so the most specific, key-independent reason
/// wins (a ticket for another user reports 70013 even when its key is also wrong).
pub fn verify(
    usersig: &str,
    key: &str,
    sdkappid: u32,
    identifier: &str,
    now: u64,
) -> Result<UserSigClaims, UserSigError> {
    Verifier::new(key).verify(usersig, sdkappid, identifier, now)
}

/// [`verify`] with one key prepared once (its HMAC pads computed): a server checks many
/// UserSigs of one app.
#[derive(Clone)]
pub struct Verifier {
    keyed: HmacSha256,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(<key>)")
    }
}

impl Verifier {
    /// A verifier for UserSigs signed with `key`.
    pub fn new(key: &str) -> Verifier {
        Verifier { keyed: keyed(key) }
    }

    /// Exactly [`verify`] with this verifier's key.
    pub fn verify(
        &self,
        usersig: &str,
        sdkappid: u32,
        identifier: &str,
        now: u64,
    ) -> Result<UserSigClaims, UserSigError> {
        let d = decode_inner(usersig)?;
        let c = &d.claims;
        if c.sdkappid != sdkappid {
            return Err(UserSigError::SdkAppIdMismatch);
        }
        if c.identifier != identifier {
            return Err(UserSigError::IdentifierMismatch);
        }
        // Sign with the caller's sdkappid and identifier (equal to the claims by now) and the
        // document's own userbuf text, then compare in constant time via `verify_slice`.
        let mac = content_mac(
            self.keyed.clone(),
            identifier,
            sdkappid,
            c.time,
            c.expire,
            d.userbuf_b64.as_deref(),
        );
        let given = SIG_B64
            .decode(&d.sig)
            .map_err(|_| UserSigError::BadSignature)?;
        mac.verify_slice(&given)
            .map_err(|_| UserSigError::BadSignature)?;
        if now >= c.expires_at() {
            return Err(UserSigError::Expired);
        }
        Ok(d.claims)
    }
}
