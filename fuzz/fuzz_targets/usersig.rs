//! UserSig decode and verify (`tim-usersig`), three ways: raw text as a client sends it;
//! the bytes as the inflated document (compressed and encoded here, so the fuzzer works
//! on the JSON behind zlib and base64); and generated UserSigs, which must verify exactly
//! while unexpired.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

const APP: u32 = 1_400_000_000;
const KEY: &str = "fuzz-app-key";
const NOW: u64 = 1_700_000_000;

/// `bytes` as a zlib stream of stored (uncompressed) blocks: cheap to build, so the fuzzer's
/// time goes to the verifier.
fn zlib_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut chunks = bytes.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

#[derive(Debug, Arbitrary)]
struct Generated {
    sdkappid: u32,
    identifier: String,
    time: u64,
    expire: u64,
    now: u64,
    userbuf: Option<Vec<u8>>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let decoded = tim_usersig::decode(text);
            let verified = tim_usersig::verify(text, KEY, APP, "alice", NOW);
            // Whatever verifies decodes to the same claims.
            if let Ok(claims) = verified {
                assert_eq!(decoded, Ok(claims));
            }
        }
        1 => {
            let sig = tim_usersig::encode_base64url(&zlib_stored(rest));
            let _ = tim_usersig::decode(&sig);
            let _ = tim_usersig::verify(&sig, KEY, APP, "alice", NOW);
        }
        _ => {
            let Ok(g) = Generated::arbitrary(&mut Unstructured::new(rest)) else {
                return;
            };
            let sig = match &g.userbuf {
                None => tim_usersig::generate(g.sdkappid, KEY, &g.identifier, g.time, g.expire),
                Some(buf) => tim_usersig::generate_with_userbuf(
                    g.sdkappid,
                    KEY,
                    &g.identifier,
                    g.time,
                    g.expire,
                    buf,
                ),
            };
            // Beyond the verifier's bounds (text, or inflated document): refused as such.
            let claims = match tim_usersig::decode(&sig) {
                Ok(claims) => claims,
                Err(tim_usersig::UserSigError::TooLarge)
                    if sig.len() > tim_usersig::MAX_USERSIG_LEN
                        || g.identifier.len() * 6 + g.userbuf.as_ref().map_or(0, Vec::len) * 2
                            > tim_usersig::MAX_INFLATED_LEN - 400 =>
                {
                    return
                }
                Err(e) => panic!("a generated UserSig does not decode: {e:?}"),
            };
            assert_eq!(
                (claims.sdkappid, claims.time, claims.expire),
                (g.sdkappid, g.time, g.expire)
            );
            assert_eq!(claims.identifier, g.identifier);
            assert_eq!(claims.userbuf, g.userbuf);
            let verified = tim_usersig::verify(&sig, KEY, g.sdkappid, &g.identifier, g.now);
            let valid = g.now < g.time.saturating_add(g.expire);
            assert_eq!(verified.is_ok(), valid, "{verified:?}");
            let other = tim_usersig::verify(&sig, "another-key", g.sdkappid, &g.identifier, g.now);
            assert!(other.is_err());
        }
    }
});
