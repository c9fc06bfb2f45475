//! Verification against the official Node/Python vectors, round trips, and one test per error.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use tim_usersig::{decode, generate, generate_with_userbuf, verify, UserSigClaims, UserSigError};

const VECTORS: &str = include_str!("usersig-vectors.jsonl");
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const APP: u32 = 1_400_000_000;
const T0: u64 = 1_700_000_000;

struct Vector {
    sdkappid: u32,
    identifier: String,
    time: u64,
    expire: u64,
    key: String,
    usersig: String,
}

fn vectors() -> Vec<Vector> {
    VECTORS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Vector {
                sdkappid: v["sdkappid"].as_u64().unwrap() as u32,
                identifier: v["identifier"].as_str().unwrap().to_owned(),
                time: v["time"].as_u64().unwrap(),
                expire: v["expire"].as_u64().unwrap(),
                key: v["key"].as_str().unwrap().to_owned(),
                usersig: v["usersig"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

/// Tencent-alphabet base64 → raw bytes (test helper, independent of the crate's decoder).
fn unescape(s: &str) -> Vec<u8> {
    let std: String = s
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect();
    STANDARD.decode(std).unwrap()
}

fn escape(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_")
}

fn inflate_json(usersig: &str) -> Value {
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&unescape(usersig)).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// Wrap arbitrary bytes as a UserSig: zlib + Tencent base64.
fn wrap(json: &[u8]) -> String {
    escape(&miniz_oxide::deflate::compress_to_vec_zlib(json, 6))
}

fn wrap_value(v: &Value) -> String {
    wrap(serde_json::to_string(v).unwrap().as_bytes())
}

fn valid_doc() -> Value {
    inflate_json(&generate(APP, KEY, "alice", T0, 3600))
}

// ---- official vectors ----

#[test]
fn every_vector_verifies_one_second_after_issue() {
    let vs = vectors();
    assert_eq!(vs.len(), 6);
    for v in &vs {
        let c = verify(&v.usersig, &v.key, v.sdkappid, &v.identifier, v.time + 1)
            .unwrap_or_else(|e| panic!("{}: {e}", v.usersig));
        assert_eq!(
            c,
            UserSigClaims {
                identifier: v.identifier.clone(),
                sdkappid: v.sdkappid,
                time: v.time,
                expire: v.expire,
                userbuf: None,
            }
        );
        assert_eq!(decode(&v.usersig).unwrap(), c);
    }
}

#[test]
fn every_vector_expires_exactly_at_time_plus_expire() {
    for v in vectors() {
        let end = v.time + v.expire;
        assert!(verify(&v.usersig, &v.key, v.sdkappid, &v.identifier, end - 1).is_ok());
        assert_eq!(
            verify(&v.usersig, &v.key, v.sdkappid, &v.identifier, end),
            Err(UserSigError::Expired)
        );
    }
}

#[test]
fn generated_sig_matches_vectors_sig_and_claims() {
    // zlib output differs by library, but the HMAC over the same content is deterministic.
    for v in vectors() {
        let ours = generate(v.sdkappid, &v.key, &v.identifier, v.time, v.expire);
        assert_eq!(decode(&ours).unwrap(), decode(&v.usersig).unwrap());
        let (a, b) = (inflate_json(&ours), inflate_json(&v.usersig));
        assert_eq!(a["TLS.sig"], b["TLS.sig"]);
        assert_eq!(a, b, "same document modulo key order/whitespace");
    }
}

#[test]
fn generated_json_matches_node_text_exactly() {
    // Same key order and compact separators as Tencent's Node generator (first vector).
    let v = &vectors()[0];
    let ours = generate(v.sdkappid, &v.key, &v.identifier, v.time, v.expire);
    let a = miniz_oxide::inflate::decompress_to_vec_zlib(&unescape(&ours)).unwrap();
    let b = miniz_oxide::inflate::decompress_to_vec_zlib(&unescape(&v.usersig)).unwrap();
    assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
}

#[test]
fn vectors_use_tencent_url_characters_and_both_alphabets_decode() {
    let vs = vectors();
    let all: String = vs.iter().map(|v| v.usersig.as_str()).collect();
    for c in ['*', '-', '_'] {
        assert!(all.contains(c), "vectors exercise {c:?}");
    }
    for v in &vs {
        let claims = decode(&v.usersig).unwrap();
        // Standard alphabet (+ / =) is accepted too.
        let standard = STANDARD.encode(unescape(&v.usersig));
        assert_eq!(decode(&standard).unwrap(), claims);
        // So is missing padding.
        let unpadded = v.usersig.trim_end_matches('_');
        assert_eq!(decode(unpadded).unwrap(), claims);
    }
}

// ---- round trips ----

#[test]
fn round_trip() {
    let s = generate(APP, KEY, "alice", T0, 3600);
    let c = verify(&s, KEY, APP, "alice", T0).unwrap();
    assert_eq!(
        c,
        UserSigClaims {
            identifier: "alice".into(),
            sdkappid: APP,
            time: T0,
            expire: 3600,
            userbuf: None
        }
    );
    assert_eq!(c.expires_at(), T0 + 3600);
    assert!(s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"*-_".contains(&b)));
}

#[test]
fn round_trip_with_userbuf() {
    let buf: Vec<u8> = (0..=255).collect();
    let s = generate_with_userbuf(APP, KEY, "alice", T0, 3600, &buf);
    let c = verify(&s, KEY, APP, "alice", T0 + 1).unwrap();
    assert_eq!(c.userbuf.as_deref(), Some(&buf[..]));
    assert_eq!(inflate_json(&s)["TLS.userbuf"], STANDARD.encode(&buf));
}

#[test]
fn empty_userbuf_is_kept_and_signed() {
    let s = generate_with_userbuf(APP, KEY, "alice", T0, 3600, &[]);
    assert_eq!(inflate_json(&s)["TLS.userbuf"], "");
    assert_eq!(
        verify(&s, KEY, APP, "alice", T0).unwrap().userbuf,
        Some(vec![])
    );
    // Not the same ticket as one without userbuf: the userbuf line is signed.
    assert_ne!(inflate_json(&s)["TLS.sig"], valid_doc()["TLS.sig"]);
}

#[test]
fn userbuf_python_style_document_verifies_with_expected_sig() {
    // Built the way Tencent's Python generator does (json.dumps with ", " / ": ", its key
    // order, zlib.compress); sig computed independently with Python's hmac.
    let s = "eJxdjssKglAURX9F7jhExUoCBycfaKhlmndsebWb*cBXQvTvaZmDznCtvdnniXzLYztSoQ2DBJZDC*ZDaETyhsb0K3oaFrc2-8k6SsOypNGgeJGbbnKkL2lFBiOtxBk2NBsRv-4LtzWpzm08TgBEYoj1LsyDFkBT4OHq2*RiKm5hqcDt1R6O2tWW5x9oMtZOydL3bGh2rtFt*UAIstTHtpZaziHznEBp7iaODQySKMno9QZPKURN";
    let ub = STANDARD
        .decode("AAd4aWFvanVuAAECAwQFBgcICQoLDA0ODxAREhM=")
        .unwrap();
    let c = verify(s, KEY, APP, "xiaojun", T0).unwrap();
    assert_eq!(c.userbuf.as_deref(), Some(&ub[..]));
    let ours = generate_with_userbuf(APP, KEY, "xiaojun", T0, 86400, &ub);
    assert_eq!(
        inflate_json(&ours)["TLS.sig"],
        "Ug5TSMAtJQHvB1V2VmkTWMEkLNPmSNVCtlIWfHWA848="
    );
    assert_eq!(inflate_json(s)["TLS.sig"], inflate_json(&ours)["TLS.sig"]);
}

#[test]
fn numeric_fields_written_as_strings_are_accepted() {
    // Same as above but with sdkappid/time/expire as JSON strings (lenient, like the server).
    let s = "eJxdzksLgkAUhuG-IrMOUbGSwMXxhoZapjlry9Em84K3hOi-h5YFneX78MF5oMD22Z7UaMMggeXQgpkKjUnR0oS*YaBRee2KGZs4i6qKxiPxIve5WclQ0ZqMJq3EX25pPkV*-T-oGlKfumREgFiMsNFHRdgB6CrcPUNJz5bqlbYG3E4b4KBfHPn7CU3H2TFdBr4D7dYze4UPhTDPAuzome3uc98N1fZm4cTEIImSjJ4vYaFFGQ__";
    let c = verify(s, KEY, APP, "xiaojun", T0).unwrap();
    assert_eq!((c.sdkappid, c.time, c.expire), (APP, T0, 86400));
}

#[test]
fn huge_expire_saturates_instead_of_wrapping() {
    let s = generate(APP, KEY, "alice", T0, u64::MAX);
    assert!(verify(&s, KEY, APP, "alice", u64::MAX - 1).is_ok());
}

// ---- errors, each with its code ----

fn err(usersig: &str) -> UserSigError {
    verify(usersig, KEY, APP, "alice", T0).unwrap_err()
}

#[test]
fn empty_is_70002() {
    assert_eq!(err(""), UserSigError::Empty);
    assert_eq!(UserSigError::Empty.code(), 70002);
    assert_eq!(decode(""), Err(UserSigError::Empty));
}

#[test]
fn not_base64_is_70003() {
    for bad in ["not base64!", "eJyr.VgrxCdY", "abcde", "ab_cd"] {
        let e = err(bad);
        assert_eq!(e, UserSigError::NotBase64, "{bad}");
        assert_eq!(e.code(), 70003);
        assert_eq!(e.to_string(), "UserSig is not valid base64url");
    }
}

#[test]
fn not_zlib_is_70003() {
    let e = err(&escape(b"{\"TLS.ver\":\"2.0\"} plain, not compressed"));
    assert_eq!(e, UserSigError::NotZlib);
    assert_eq!(e.code(), 70003);
    assert_eq!(e.to_string(), "UserSig does not inflate (zlib)");
    // A valid stream with a corrupted Adler-32 trailer is not zlib either.
    let mut z = miniz_oxide::deflate::compress_to_vec_zlib(br#"{"a":1}"#, 6);
    *z.last_mut().unwrap() ^= 1;
    assert_eq!(err(&escape(&z)), UserSigError::NotZlib);
}

#[test]
fn zlib_bomb_is_rejected_as_too_large() {
    // 10 MB of zeros: even compressed it exceeds the input cap, so it is never inflated.
    let ten_mb = wrap(&vec![0u8; 10 * 1024 * 1024]);
    assert!(ten_mb.len() > tim_usersig::MAX_USERSIG_LEN);
    let e = err(&ten_mb);
    assert_eq!(e, UserSigError::TooLarge);
    assert_eq!(e.code(), 70003);
    // 1 MB of zeros fits the input cap (~1.4 KB) but inflating stops at the 8 KiB bound.
    let one_mb = wrap(&vec![0u8; 1024 * 1024]);
    assert!(one_mb.len() <= tim_usersig::MAX_USERSIG_LEN);
    assert_eq!(err(&one_mb), UserSigError::TooLarge);
    assert!(UserSigError::TooLarge.to_string().contains("8192"));
    // Exactly at the bound is fine as far as inflating goes (then it is simply not JSON).
    assert_eq!(err(&wrap(&[b' '; 8192])), UserSigError::NotJson);
    assert_eq!(err(&wrap(&[b' '; 8193])), UserSigError::TooLarge);
}

/// Each thread reuses one inflate state: whatever the previous UserSig left in it (a bomb
/// stopped halfway, a truncated or corrupted stream), the next one inflates alone.
#[test]
fn every_usersig_inflates_from_a_clean_state() {
    let good = generate(APP, KEY, "alice", 1_700_000_000, 86_400);
    let mut corrupt = miniz_oxide::deflate::compress_to_vec_zlib(br#"{"a":1}"#, 6);
    *corrupt.last_mut().unwrap() ^= 1;
    let z = miniz_oxide::deflate::compress_to_vec_zlib(&[b' '; 300], 6);
    let truncated = escape(&z[..z.len() / 2]);
    let bad = [
        (wrap(&vec![0u8; 1024 * 1024]), UserSigError::TooLarge),
        (truncated, UserSigError::NotZlib),
        (escape(&corrupt), UserSigError::NotZlib),
        (escape(b"plain"), UserSigError::NotZlib),
        (wrap(b"{\"TLS.ver\":"), UserSigError::NotJson),
    ];
    for _ in 0..3 {
        for (usersig, want) in &bad {
            assert_eq!(err(usersig), *want);
            let claims = verify(&good, KEY, APP, "alice", 1_700_000_001).unwrap();
            assert_eq!(claims.identifier, "alice");
        }
    }
}

#[test]
fn valid_zlib_but_not_json_is_70003() {
    for body in [
        &b"hello"[..],
        b"[1,2,3]",
        b"\"TLS.ver\"",
        b"{\"TLS.ver\":",
        b"\xff\xfe",
    ] {
        let e = err(&wrap(body));
        assert_eq!(e, UserSigError::NotJson, "{body:?}");
        assert_eq!(e.code(), 70003);
        assert_eq!(e.to_string(), "UserSig is not JSON");
    }
}

#[test]
fn each_missing_field_is_70003_and_named() {
    for field in [
        "TLS.ver",
        "TLS.identifier",
        "TLS.sdkappid",
        "TLS.time",
        "TLS.expire",
        "TLS.sig",
    ] {
        let mut doc = valid_doc();
        doc.as_object_mut().unwrap().remove(field);
        let e = err(&wrap_value(&doc));
        assert_eq!(e, UserSigError::MissingField(field));
        assert_eq!(e.code(), 70003);
        assert!(e.to_string().contains(field), "{e}");
        assert_eq!(
            decode(&wrap_value(&doc)),
            Err(UserSigError::MissingField(field))
        );
    }
}

#[test]
fn wrongly_typed_fields_are_reported_by_name() {
    let cases: [(&str, Value); 7] = [
        ("TLS.identifier", Value::Bool(true)),
        ("TLS.sdkappid", serde_json::json!(-1)),
        ("TLS.sdkappid", serde_json::json!(4_294_967_296u64)),
        ("TLS.time", serde_json::json!(1.5)),
        ("TLS.expire", serde_json::json!("12a")),
        ("TLS.sig", serde_json::json!(42)),
        ("TLS.userbuf", serde_json::json!("%%%")),
    ];
    for (field, value) in cases {
        let mut doc = valid_doc();
        doc[field] = value;
        assert_eq!(err(&wrap_value(&doc)), UserSigError::MissingField(field));
    }
}

#[test]
fn bad_version_is_70003() {
    for ver in [serde_json::json!("1.0"), serde_json::json!(2.0)] {
        let mut doc = valid_doc();
        doc["TLS.ver"] = ver;
        let e = err(&wrap_value(&doc));
        assert_eq!(e, UserSigError::BadVersion);
        assert_eq!(e.code(), 70003);
    }
}

#[test]
fn tampered_signature_is_70009() {
    let mut doc = valid_doc();
    let sig = doc["TLS.sig"].as_str().unwrap().to_owned();
    // Flip the first character: still base64, different MAC.
    let first = if sig.starts_with('A') { "B" } else { "A" };
    doc["TLS.sig"] = Value::String(format!("{first}{}", &sig[1..]));
    let e = err(&wrap_value(&doc));
    assert_eq!(e, UserSigError::BadSignature);
    assert_eq!(e.code(), 70009);
    assert_eq!(
        e.to_string(),
        "signature check failed: wrong key or tampered UserSig"
    );
    // Garbage, truncated, or trailing-bit variants of the signature are 70009 too.
    for bad in ["", "!!!", &sig[..20]] {
        doc["TLS.sig"] = Value::String(bad.to_owned());
        assert_eq!(err(&wrap_value(&doc)), UserSigError::BadSignature, "{bad}");
    }
    // Flipping only the 2 trailing (padding) bits of the last sextet would decode to the same
    // MAC under lenient base64; it is rejected, so no two signature texts verify alike.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let idx = ALPHABET
        .iter()
        .position(|&c| c == sig.as_bytes()[42])
        .unwrap();
    let mut s = sig.clone().into_bytes();
    s[42] = ALPHABET[idx ^ 1];
    doc["TLS.sig"] = Value::String(String::from_utf8(s).unwrap());
    assert_eq!(err(&wrap_value(&doc)), UserSigError::BadSignature);
    // Unpadded but otherwise identical signature is accepted.
    doc["TLS.sig"] = Value::String(sig.trim_end_matches('=').to_owned());
    assert!(verify(&wrap_value(&doc), KEY, APP, "alice", T0).is_ok());
}

#[test]
fn tampered_claims_are_70009() {
    // Extending the lifetime without re-signing must not work.
    let mut doc = valid_doc();
    doc["TLS.expire"] = serde_json::json!(999_999_999);
    assert_eq!(err(&wrap_value(&doc)), UserSigError::BadSignature);
    // Adding a userbuf that was not signed must not work either.
    let mut doc = valid_doc();
    doc["TLS.userbuf"] = serde_json::json!("");
    assert_eq!(err(&wrap_value(&doc)), UserSigError::BadSignature);
}

#[test]
fn wrong_key_is_70009() {
    let s = generate(APP, "another-secret-key", "alice", T0, 3600);
    let e = err(&s);
    assert_eq!(e, UserSigError::BadSignature);
    assert_eq!(e.code(), 70009);
    // The key is used as UTF-8 text, not hex-decoded.
    let v = &vectors()[0];
    assert_eq!(
        verify(
            &v.usersig,
            &v.key.to_uppercase(),
            v.sdkappid,
            &v.identifier,
            v.time
        ),
        Err(UserSigError::BadSignature)
    );
}

#[test]
fn another_identifier_is_70013_even_with_wrong_key() {
    let s = generate(APP, KEY, "bob", T0, 3600);
    let e = err(&s);
    assert_eq!(e, UserSigError::IdentifierMismatch);
    assert_eq!(e.code(), 70013);
    let s = generate(APP, "wrong-key", "bob", T0, 3600);
    assert_eq!(err(&s), UserSigError::IdentifierMismatch);
    // Case matters.
    assert_eq!(
        err(&generate(APP, KEY, "Alice", T0, 3600)),
        UserSigError::IdentifierMismatch
    );
}

#[test]
fn another_sdkappid_is_70014_before_identifier() {
    let s = generate(APP + 1, KEY, "alice", T0, 3600);
    let e = err(&s);
    assert_eq!(e, UserSigError::SdkAppIdMismatch);
    assert_eq!(e.code(), 70014);
    let s = generate(APP + 1, "wrong-key", "bob", T0, 3600);
    assert_eq!(err(&s), UserSigError::SdkAppIdMismatch);
}

#[test]
fn expiry_boundary_is_70001() {
    let s = generate(APP, KEY, "alice", T0, 3600);
    assert!(verify(&s, KEY, APP, "alice", T0 + 3600 - 1).is_ok());
    let e = verify(&s, KEY, APP, "alice", T0 + 3600).unwrap_err();
    assert_eq!(e, UserSigError::Expired);
    assert_eq!(e.code(), 70001);
    // Signature is checked before expiry: an expired forgery is a bad signature.
    let forged = generate(APP, "wrong-key", "alice", T0, 3600);
    assert_eq!(
        verify(&forged, KEY, APP, "alice", T0 + 7200),
        Err(UserSigError::BadSignature)
    );
    // decode does not judge expiry.
    assert!(decode(&s).is_ok());
}

#[test]
fn decode_ignores_signature() {
    let s = generate(APP, "whatever", "alice", T0, 60);
    assert_eq!(decode(&s).unwrap().identifier, "alice");
}

#[test]
fn every_error_has_a_distinct_message_and_expected_code() {
    let all = [
        (UserSigError::Empty, 70002),
        (UserSigError::NotBase64, 70003),
        (UserSigError::NotZlib, 70003),
        (UserSigError::TooLarge, 70003),
        (UserSigError::NotJson, 70003),
        (UserSigError::MissingField("TLS.sig"), 70003),
        (UserSigError::BadVersion, 70003),
        (UserSigError::BadSignature, 70009),
        (UserSigError::IdentifierMismatch, 70013),
        (UserSigError::SdkAppIdMismatch, 70014),
        (UserSigError::Expired, 70001),
    ];
    let mut msgs: Vec<String> = all.iter().map(|(e, _)| e.message()).collect();
    for (e, code) in &all {
        assert_eq!(e.code(), *code, "{e:?}");
        assert_eq!(e.to_string(), e.message());
        let _: &dyn std::error::Error = e;
    }
    msgs.sort();
    msgs.dedup();
    assert_eq!(msgs.len(), all.len());
}
