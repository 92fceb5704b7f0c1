//! The token parser: shape and CRC check, then the digest (`TokenFormat::digest_of`).
//!
//! Invariants: a token that passes has the prefix, `_` and 64 lowercase hex whose last 8 are
//! the CRC-32 of everything before them, and its digest is the domain-separated BLAKE3 the
//! ledger stores (a change there would lock every issued key out); a token built the way
//! `mint` builds one from the input's bytes passes, and any one character changed fails.
#![no_main]

use keyledger::service::token::TokenFormat;
use libfuzzer_sys::fuzz_target;

const DIGEST_CONTEXT: &str = "keyledger 2026-11-29 api token digest v1";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let format = TokenFormat::new("rootly").expect("the default prefix is valid");

    if let Ok(presented) = std::str::from_utf8(data) {
        if let Some(digest) = format.digest_of(presented) {
            let secret = presented.strip_prefix("rootly_").expect("an accepted token has the prefix");
            assert_eq!(secret.len(), 64);
            assert!(secret.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            let (body, checksum) = presented.split_at(presented.len() - 8);
            assert_eq!(checksum, format!("{:08x}", crc32fast::hash(body.as_bytes())));
            assert_eq!(digest.as_bytes(), &blake3::derive_key(DIGEST_CONTEXT, presented.as_bytes()));
        }
    }

    if data.len() >= 29 {
        let mut token = format!("rootly_{}", hex(&data[..28]));
        token.push_str(&format!("{:08x}", crc32fast::hash(token.as_bytes())));
        assert!(format.digest_of(&token).is_some(), "a well-formed token is refused: {token}");
        let at = "rootly_".len() + usize::from(data[28]) % 64;
        let mut changed = token.clone().into_bytes();
        changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
        let changed = String::from_utf8(changed).expect("hex stays ASCII");
        assert!(format.digest_of(&changed).is_none(), "one character changed and still accepted: {changed}");
    }
});
