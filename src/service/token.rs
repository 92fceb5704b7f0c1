//! API tokens: minting, shape checks and digests.
//!
//! A token is `<prefix>_<56 hex random><8 hex CRC-32>`: 224 bits from the OS CSPRNG and a
//! checksum of everything before it, so a mistyped or made-up token is refused before any
//! lookup, and secret scanners can recognise leaked ones. Only a BLAKE3 digest in
//! `derive_key` mode (domain-separated, keyless, so an export imported elsewhere still
//! authenticates the same tokens) is ever stored.

use std::fmt;

const DIGEST_CONTEXT: &str = "keyledger 2026-11-29 api token digest v1";
const RANDOM_BYTES: usize = 28;

/// The configured token prefix (`rootly` by default).
#[derive(Clone, Debug)]
pub struct TokenFormat {
    prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token prefix {0:?} must be 1 to 32 characters of a-z and 0-9")]
    BadPrefix(String),
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// A freshly minted token. The plaintext leaves only through [`IssuedToken::reveal`], into
/// the one response that returns it; `Debug` never shows it.
pub struct IssuedToken {
    plaintext: String,
    digest: blake3::Hash,
}

impl IssuedToken {
    pub fn reveal(&self) -> &str {
        &self.plaintext
    }

    pub fn digest(&self) -> blake3::Hash {
        self.digest
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuedToken {{ digest: {} }}", self.digest)
    }
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
}

fn digest(token: &str) -> blake3::Hash {
    blake3::Hash::from_bytes(blake3::derive_key(DIGEST_CONTEXT, token.as_bytes()))
}

impl TokenFormat {
    pub fn new(prefix: &str) -> Result<Self, TokenError> {
        let valid = !prefix.is_empty() && prefix.len() <= 32 && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(TokenError::BadPrefix(prefix.to_owned()));
        }
        Ok(TokenFormat { prefix: prefix.to_owned() })
    }

    pub fn mint(&self) -> Result<IssuedToken, TokenError> {
        let mut random = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut random).map_err(TokenError::Random)?;
        let mut plaintext = String::with_capacity(self.prefix.len() + 1 + 64);
        plaintext.push_str(&self.prefix);
        plaintext.push('_');
        hex_into(&mut plaintext, &random);
        let checksum = crc32fast::hash(plaintext.as_bytes());
        hex_into(&mut plaintext, &checksum.to_be_bytes());
        Ok(IssuedToken { digest: digest(&plaintext), plaintext })
    }

    /// The digest to look a presented token up by, or `None` when its shape or checksum is
    /// wrong — which needs no storage to tell.
    pub fn digest_of(&self, presented: &str) -> Option<blake3::Hash> {
        let secret = presented.strip_prefix(self.prefix.as_str())?.strip_prefix('_')?;
        if secret.len() != 64 || !secret.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let (body, checksum) = presented.split_at(presented.len() - 8);
        let mut expected = String::with_capacity(8);
        hex_into(&mut expected, &crc32fast::hash(body.as_bytes()).to_be_bytes());
        (checksum == expected).then(|| digest(presented))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> TokenFormat {
        TokenFormat::new("rootly").unwrap()
    }

    #[test]
    fn minted_tokens_have_the_scanner_shape_and_check_out() {
        let token = format().mint().unwrap();
        let text = token.reveal();
        assert_eq!(text.len(), "rootly_".len() + 64);
        assert!(text.starts_with("rootly_"));
        assert!(text["rootly_".len()..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(format().digest_of(text), Some(token.digest()));
    }

    #[test]
    fn two_mints_differ() {
        assert_ne!(format().mint().unwrap().reveal(), format().mint().unwrap().reveal());
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let token = format().mint().unwrap();
        let mut chars: Vec<char> = token.reveal().chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let mistyped: String = chars.into_iter().collect();
        assert_eq!(format().digest_of(&mistyped), None);
    }

    #[test]
    fn wrong_prefix_length_or_case_is_refused() {
        let token = format().mint().unwrap();
        let text = token.reveal();
        assert_eq!(TokenFormat::new("acme").unwrap().digest_of(text), None);
        assert_eq!(format().digest_of(&text[..text.len() - 1]), None);
        assert_eq!(format().digest_of(&text.to_uppercase().replacen("ROOTLY", "rootly", 1)), None);
        assert_eq!(format().digest_of(""), None);
    }

    #[test]
    fn debug_never_shows_the_plaintext() {
        let token = format().mint().unwrap();
        assert!(!format!("{token:?}").contains(token.reveal()));
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in ["", "Rootly", "root-ly", &"a".repeat(33)] {
            assert!(TokenFormat::new(bad).is_err(), "{bad:?}");
        }
    }
}
