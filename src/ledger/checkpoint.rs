//! Signed checkpoints: the log's size and head hash, signed, in the C2SP formats.
//!
//! Anyone who can write the data directory can rewrite the log and recompute every hash after
//! the rewrite; the chain alone cannot show that. A checkpoint kept where the ledger cannot
//! write (committed elsewhere, sent to an auditor) can: a later log must still have the
//! checkpointed hash at the checkpointed size.
//!
//! The text is a [C2SP signed note](https://c2sp.org/signed-note) whose body follows
//! [C2SP tlog-checkpoint](https://c2sp.org/tlog-checkpoint):
//!
//! ```text
//! keyledger/0c249f8a1980712d
//! 1042
//! 4v0Jm2V8GcmvO9tCk6R0Tq7o3vO1z8x3hQ7yq9mL9YI=
//!
//! — keyledger/0c249f8a1980712d yJ4fMb0J…
//! ```
//!
//! - The origin is `keyledger/` and the first 16 hex digits of event 1's hash: it names one
//!   ledger, so a checkpoint of another ledger (or of one rewritten from its first event) is
//!   told apart before any hash is compared. It is also the signing key's name, as the
//!   checkpoint format recommends.
//! - The size is the number of events.
//! - **Deviation from tlog-checkpoint:** the third line is the base64 of the hash-chain head
//!   (the `hash` of the last event), not an RFC 6962 Merkle root. A chain head proves the same
//!   thing for an auditor who replays the log (the log at that size has exactly this history),
//!   but it has no inclusion or consistency proofs, so generic transparency-log witnesses
//!   cannot check it.
//!
//! Signatures are Ed25519 (signature type 0x01): the signature line carries
//! `base64(key ID ‖ signature)`, with key ID = the first 4 bytes of
//! `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`; a verifier key is shared as
//! `<name>+<key ID hex>+<base64(0x01 ‖ public key)>`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::verify::Summary;
use super::{LedgerError, Storage};

/// The signing key's file in the data directory: its 32-byte seed in hex, mode 0600.
pub const KEY_FILE: &str = "audit-signing.key";

/// The Ed25519 signature type byte of C2SP signed notes.
const ED25519: u8 = 0x01;

/// The em dash (U+2014) and space that start a signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// More signature lines than this make a note malformed (the spec asks verifiers for a limit
/// of at least 16).
const MAX_SIGNATURES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is not a valid signed note: {0}")]
    Malformed(String),
    #[error("signature check failed: the checkpoint has no signature by {name} (key ID {key_id:08x}); it is signed by {found}")]
    NotSigned { name: String, key_id: u32, found: String },
    #[error("signature check failed: the signature by {name} (key ID {key_id:08x}) does not verify; the checkpoint was altered, or signed by another key of the same name")]
    BadSignature { name: String, key_id: u32 },
    #[error("origin check failed: the checkpoint is of ledger {checkpoint} but this log is {log}; it is another ledger, or this one was rewritten from its first event")]
    Origin { checkpoint: String, log: String },
    #[error("size check failed: the checkpoint covers {checkpoint} events but the log has only {log}; events were removed")]
    Shorter { checkpoint: u64, log: u64 },
    #[error("hash check failed: at size {size} the checkpoint's head hash is {checkpoint} but the log's is {log}; the log was rewritten at or before position {size}")]
    Rewritten { size: u64, checkpoint: blake3::Hash, log: blake3::Hash },
    #[error("not a verifier key ({0}); expected <name>+<key ID hex>+<base64 key>, as `keyledger audit checkpoint --verifier-key` prints")]
    VerifierKey(String),
    #[error("the audit signing key {source_name} is not 64 hex digits (a 32-byte Ed25519 seed)")]
    KeyFormat { source_name: String },
    #[error("cannot {action} the audit signing key {}: {source}", path.display())]
    KeyFile { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot draw a random audit signing key: {0}")]
    Random(getrandom::Error),
    #[error("the log is empty: there is nothing to checkpoint yet")]
    Empty,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

fn malformed(reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed(reason.into())
}

/// The origin line of a ledger: `keyledger/` and the first 16 hex digits of event 1's hash.
pub fn origin(first_hash: &blake3::Hash) -> String {
    let hex = first_hash.to_hex();
    format!("keyledger/{}", &hex.as_str()[..16])
}

/// C2SP key ID of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4], big-endian.
fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let digest = Sha256::new().chain_update(name.as_bytes()).chain_update([b'\n', ED25519]).chain_update(public.as_bytes()).finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Key names (and our origins, which double as key names) are non-empty, without spaces or
/// `+`, which would make signature lines and verifier keys ambiguous.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The Ed25519 key that signs checkpoints. Its `Debug` shows only the public half.
pub struct AuditKey {
    signing: SigningKey,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey").field("public", &BASE64.encode(self.signing.verifying_key().as_bytes())).finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, CheckpointError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(CheckpointError::Random)?;
        let key = AuditKey { signing: SigningKey::from_bytes(&seed) };
        seed.fill(0);
        Ok(key)
    }

    /// A key from its seed in hex (surrounding whitespace ignored). `source_name` says where
    /// the text came from, for the error; the text itself is never repeated.
    pub fn from_hex(text: &str, source_name: &str) -> Result<Self, CheckpointError> {
        let bad = || CheckpointError::KeyFormat { source_name: source_name.to_owned() };
        let text = text.trim();
        if text.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (byte, pair) in seed.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        let key = AuditKey { signing: SigningKey::from_bytes(&seed) };
        seed.fill(0);
        Ok(key)
    }

    /// The verifier for this key under `name` (a ledger's [`origin`]).
    pub fn verifier(&self, name: &str) -> Verifier {
        let public = self.signing.verifying_key();
        Verifier { name: name.to_owned(), key_id: key_id(name, &public), public }
    }

    /// The seed in hex, as `KEYLEDGER_AUDIT_KEY` and the key file hold it: the secret itself,
    /// for `audit keygen` to hand to whoever keeps it (never for a log line).
    pub fn seed_hex(&self) -> String {
        self.signing.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How [`load_or_create_key_file`] found the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    Existing,
    Created,
}

/// Reads the signing key from `dir`, if there is one.
pub fn load_key_file(dir: &Path) -> Result<Option<AuditKey>, CheckpointError> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => AuditKey::from_hex(&text, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::KeyFile { action: "read", path, source }),
    }
}

/// Reads the signing key from `dir`, creating one first if there is none.
///
/// The seed is written to a temporary file (mode 0600 from the start, so it is never readable
/// by others), synced, and renamed into place, then the directory is synced: a crash leaves
/// either no key or the whole key, never a truncated one that would refuse to load. Callers
/// hold the data directory's lock, so no other process creates one at the same time.
pub fn load_or_create_key_file(dir: &Path) -> Result<(AuditKey, KeyFile), CheckpointError> {
    if let Some(key) = load_key_file(dir)? {
        return Ok((key, KeyFile::Existing));
    }
    let key = AuditKey::generate()?;
    let path = dir.join(KEY_FILE);
    let temporary = dir.join(format!("{KEY_FILE}.tmp"));
    let fail = |action, source| CheckpointError::KeyFile { action, path: path.clone(), source };
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary).map_err(|e| fail("create", e))?;
    file.write_all(format!("{}\n", key.seed_hex()).as_bytes()).and_then(|()| file.sync_all()).map_err(|e| fail("write", e))?;
    std::fs::rename(&temporary, &path).map_err(|e| fail("create", e))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| fail("create", e))?;
    Ok((key, KeyFile::Created))
}

/// A public key that checks signatures of one name, parsed from (or printed as) a C2SP
/// verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    public: VerifyingKey,
}

impl Verifier {
    /// The key's name (a ledger's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<key ID hex>+<base64(0x01 ‖ public key)>`.
    pub fn to_vkey(&self) -> String {
        let mut typed = vec![ED25519];
        typed.extend_from_slice(self.public.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, BASE64.encode(typed))
    }

    /// Parses a verifier key, checking that its key ID is the one its name and key give.
    pub fn from_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        let bad = |reason: &str| CheckpointError::VerifierKey(reason.to_owned());
        // Names never contain `+`; the base64 key may.
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("it does not have three +-separated parts"));
        };
        if !valid_name(name) {
            return Err(bad("the name is empty or contains spaces"));
        }
        if id.len() != 8 {
            return Err(bad("the key ID is not 8 hex digits"));
        }
        let key_id = u32::from_str_radix(id, 16).map_err(|_| bad("the key ID is not 8 hex digits"))?;
        let typed = BASE64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let public: &[u8; 32] = match typed.split_first() {
            Some((&ED25519, public)) => public.try_into().map_err(|_| bad("the Ed25519 key is not 32 bytes"))?,
            _ => return Err(bad("the key is not an Ed25519 key (type 0x01)")),
        };
        let public = VerifyingKey::from_bytes(public).map_err(|_| bad("the Ed25519 key is not a valid point"))?;
        if key_id != self::key_id(name, &public) {
            return Err(bad("the key ID does not match the name and key"));
        }
        Ok(Verifier { name: name.to_owned(), key_id, public })
    }
}

/// A log's size and head hash, under its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub hash: blake3::Hash,
}

/// One signature line of a note, not yet checked.
struct SignatureLine<'a> {
    name: &'a str,
    key_id: u32,
    signature: Vec<u8>,
}

impl Checkpoint {
    /// The checkpoint of a log that [`verify`](super::verify::verify) found intact.
    pub fn of(summary: &Summary) -> Result<Self, CheckpointError> {
        let first = summary.first_hash.ok_or(CheckpointError::Empty)?;
        Ok(Checkpoint { origin: origin(&first), size: summary.events, hash: summary.head.hash })
    }

    /// The note text (body): origin, size and base64 hash, each line ending in a newline.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.hash.as_bytes()))
    }

    /// The signed note, signed by `key` under the checkpoint's origin as key name.
    pub fn sign(&self, key: &AuditKey) -> String {
        let body = self.body();
        let verifier = key.verifier(&self.origin);
        let mut signature = verifier.key_id.to_be_bytes().to_vec();
        signature.extend_from_slice(&key.signing.sign(body.as_bytes()).to_bytes());
        format!("{body}\n{SIGNATURE_PREFIX}{} {}\n", verifier.name, BASE64.encode(signature))
    }

    /// Parses a signed note and checks its signature by `verifier`. Signatures by other keys
    /// are ignored (a note may carry several, e.g. from witnesses); at least one by
    /// `verifier` must be there, and every one by it must verify.
    pub fn open(note: &str, verifier: &Verifier) -> Result<Self, CheckpointError> {
        let (body, signatures) = split_note(note)?;
        let checkpoint = parse_body(body)?;
        let mut ours = signatures.iter().filter(|s| s.name == verifier.name && s.key_id == verifier.key_id).peekable();
        if ours.peek().is_none() {
            let found = signatures.iter().map(|s| format!("{} (key ID {:08x})", s.name, s.key_id)).collect::<Vec<_>>().join(", ");
            return Err(CheckpointError::NotSigned { name: verifier.name.clone(), key_id: verifier.key_id, found });
        }
        for line in ours {
            let bad = || CheckpointError::BadSignature { name: verifier.name.clone(), key_id: verifier.key_id };
            let signature = <&[u8; 64]>::try_from(line.signature.as_slice()).map_err(|_| bad())?;
            verifier.public.verify_strict(body.as_bytes(), &Signature::from_bytes(signature)).map_err(|_| bad())?;
        }
        Ok(checkpoint)
    }

    /// The origin a note claims, before any signature is checked: to name the verifier when
    /// the key (but not its name) comes from the data directory.
    pub fn claimed_origin(note: &str) -> Result<String, CheckpointError> {
        let (body, _) = split_note(note)?;
        Ok(parse_body(body)?.origin)
    }

    /// Checks that the verified log `summary` extends this checkpoint: same ledger, at least
    /// as many events, and the same hash at the checkpoint's size.
    pub fn check_extended_by(&self, storage: &dyn Storage, summary: &Summary) -> Result<(), CheckpointError> {
        if let Some(first) = &summary.first_hash {
            let log = origin(first);
            if log != self.origin {
                return Err(CheckpointError::Origin { checkpoint: self.origin.clone(), log });
            }
        }
        if summary.events < self.size {
            return Err(CheckpointError::Shorter { checkpoint: self.size, log: summary.events });
        }
        let log = match self.size {
            0 => blake3::Hash::from_bytes([0; 32]),
            size => match storage.events_from(size).next().transpose()? {
                Some(event) if event.position == size => event.hash,
                _ => return Err(CheckpointError::Shorter { checkpoint: size, log: summary.events }),
            },
        };
        if log != self.hash {
            return Err(CheckpointError::Rewritten { size: self.size, checkpoint: self.hash, log });
        }
        Ok(())
    }
}

/// Splits a signed note into its text (with its final newline) and signature lines.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), CheckpointError> {
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed("it contains a control character other than newline (a carriage return?)"));
    }
    if !note.ends_with('\n') {
        return Err(malformed("it does not end with a newline"));
    }
    let split = note.rfind("\n\n").ok_or_else(|| malformed("there is no blank line before the signatures"))?;
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    if signatures.is_empty() {
        return Err(malformed("there are no signature lines after the last blank line"));
    }
    let lines: Vec<&str> = signatures.strip_suffix('\n').unwrap_or(signatures).split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(malformed(format!("it has more than {MAX_SIGNATURES} signature lines")));
    }
    let signatures = lines
        .into_iter()
        .map(|line| {
            let bad = || malformed(format!("{line:?} is not a signature line (\u{2014} <name> <base64>)"));
            let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(bad)?;
            let (name, encoded) = rest.split_once(' ').ok_or_else(bad)?;
            if !valid_name(name) {
                return Err(bad());
            }
            let decoded = BASE64.decode(encoded).map_err(|_| bad())?;
            if decoded.len() < 5 {
                return Err(bad());
            }
            let (id, signature) = decoded.split_at(4);
            Ok(SignatureLine { name, key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]), signature: signature.to_vec() })
        })
        .collect::<Result<_, _>>()?;
    Ok((body, signatures))
}

/// Parses a checkpoint body: origin, size (decimal, no leading zeros), base64 of 32 bytes;
/// extension lines after them are allowed (and ignored), empty lines are not.
fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let lines: Vec<&str> = body.strip_suffix('\n').unwrap_or(body).split('\n').collect();
    if lines.len() < 3 || lines.iter().any(|l| l.is_empty()) {
        return Err(malformed("the body is not an origin, a size and a hash on three non-empty lines"));
    }
    let origin = lines[0];
    if !valid_name(origin) {
        return Err(malformed(format!("the origin {origin:?} contains spaces or +")));
    }
    let size_line = lines[1];
    if !size_line.bytes().all(|b| b.is_ascii_digit()) || (size_line.len() > 1 && size_line.starts_with('0')) {
        return Err(malformed(format!("the size {size_line:?} is not a decimal number without leading zeros")));
    }
    let size = size_line.parse().map_err(|_| malformed(format!("the size {size_line:?} is too large")))?;
    let hash = BASE64
        .decode(lines[2])
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .filter(|bytes| BASE64.encode(bytes) == lines[2])
        .ok_or_else(|| malformed(format!("the hash {:?} is not the base64 of 32 bytes", lines[2])))?;
    Ok(Checkpoint { origin: origin.to_owned(), size, hash: blake3::Hash::from_bytes(hash) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AuditKey {
        AuditKey { signing: SigningKey::from_bytes(&[byte; 32]) }
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint { origin: origin(&blake3::hash(b"event 1")), size: 1042, hash: blake3::hash(b"head") }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_verifier_key() {
        let (key, checkpoint) = (key(7), checkpoint());
        let note = checkpoint.sign(&key);
        let vkey = key.verifier(&checkpoint.origin).to_vkey();
        let verifier = Verifier::from_vkey(&vkey).expect("vkey parses");
        assert_eq!(Checkpoint::open(&note, &verifier).expect("verifies"), checkpoint);
        assert_eq!(Checkpoint::claimed_origin(&note).ok(), Some(checkpoint.origin.clone()));
    }

    #[test]
    fn the_note_is_in_the_c2sp_format() {
        let (key, checkpoint) = (key(7), checkpoint());
        let note = checkpoint.sign(&key);
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines.len(), 6, "origin, size, hash, blank, signature, and the final newline: {note:?}");
        assert!(lines[0].starts_with("keyledger/") && lines[0].len() == "keyledger/".len() + 16);
        assert_eq!(lines[1], "1042");
        assert_eq!(BASE64.decode(lines[2]).ok(), Some(blake3::hash(b"head").as_bytes().to_vec()));
        assert_eq!(lines[3], "");
        let signature = lines[4].strip_prefix(&format!("\u{2014} {} ", checkpoint.origin)).expect("em dash, space, name, space");
        let decoded = BASE64.decode(signature).expect("base64");
        assert_eq!(decoded.len(), 4 + 64);
        // Key ID = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4].
        let public = key.signing.verifying_key();
        let mut input = checkpoint.origin.as_bytes().to_vec();
        input.extend_from_slice(&[0x0a, 0x01]);
        input.extend_from_slice(public.as_bytes());
        assert_eq!(decoded[..4], Sha256::digest(&input)[..4]);
        // The signature covers the body including its final newline.
        let body = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2]);
        let signature = Signature::from_bytes(decoded[4..].try_into().expect("64 bytes"));
        assert!(public.verify_strict(body.as_bytes(), &signature).is_ok());
        assert_eq!(lines[5], "");
        let vkey = key.verifier(&checkpoint.origin).to_vkey();
        assert_eq!(
            vkey,
            format!("{}+{}+{}", checkpoint.origin, hex(&decoded[..4]), BASE64.encode([&[1u8][..], public.as_bytes()].concat()))
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_tampered_body_fails_the_signature_check() {
        let (key, checkpoint) = (key(7), checkpoint());
        let verifier = key.verifier(&checkpoint.origin);
        let note = checkpoint.sign(&key);
        for tampered in [note.replacen("\n1042\n", "\n1041\n", 1), note.replacen("\n1042\n", "\n10420\n", 1)] {
            assert_ne!(tampered, note);
            assert!(matches!(Checkpoint::open(&tampered, &verifier), Err(CheckpointError::BadSignature { .. })), "{tampered}");
        }
        let other_hash = Checkpoint { hash: blake3::hash(b"other"), ..checkpoint.clone() };
        let spliced = format!("{}{}", other_hash.body(), &note[checkpoint.body().len()..]);
        assert!(matches!(Checkpoint::open(&spliced, &verifier), Err(CheckpointError::BadSignature { .. })));
    }

    #[test]
    fn a_tampered_signature_fails_the_signature_check() {
        let (key, checkpoint) = (key(7), checkpoint());
        let note = checkpoint.sign(&key);
        let line_start = note.rfind('\u{2014}').expect("signature line");
        let (head, line) = note.split_at(line_start);
        let (prefix, encoded) = line.rsplit_once(' ').expect("name and signature");
        let mut decoded = BASE64.decode(encoded.trim_end()).expect("base64");
        decoded[20] ^= 0x01;
        let tampered = format!("{head}{prefix} {}\n", BASE64.encode(decoded));
        let error = Checkpoint::open(&tampered, &key.verifier(&checkpoint.origin)).expect_err("tampered");
        assert!(matches!(error, CheckpointError::BadSignature { .. }), "{error}");
        assert!(error.to_string().starts_with("signature check failed"), "{error}");
    }

    #[test]
    fn another_key_is_not_accepted() {
        let checkpoint = checkpoint();
        let note = checkpoint.sign(&key(7));
        let error = Checkpoint::open(&note, &key(8).verifier(&checkpoint.origin)).expect_err("wrong key");
        assert!(matches!(error, CheckpointError::NotSigned { .. }), "{error}");
        assert!(error.to_string().contains(&checkpoint.origin), "names who did sign: {error}");
        // Same name and a forged key ID: the signature itself must still verify.
        let impostor = Verifier { key_id: key(7).verifier(&checkpoint.origin).key_id, ..key(8).verifier(&checkpoint.origin) };
        assert!(matches!(Checkpoint::open(&note, &impostor), Err(CheckpointError::BadSignature { .. })));
    }

    #[test]
    fn unknown_signatures_are_ignored() {
        let (key, checkpoint) = (key(7), checkpoint());
        let note = checkpoint.sign(&key);
        let witness = format!("{SIGNATURE_PREFIX}witness.example/w1 {}\n", BASE64.encode([9u8; 68]));
        let cosigned = format!("{note}{witness}");
        assert_eq!(Checkpoint::open(&cosigned, &key.verifier(&checkpoint.origin)).ok(), Some(checkpoint));
    }

    #[test]
    fn malformed_notes_are_refused_with_a_reason() {
        let (key, checkpoint) = (key(7), checkpoint());
        let verifier = key.verifier(&checkpoint.origin);
        let note = checkpoint.sign(&key);
        let cases = [
            ("", "newline"),
            (&note[..note.len() - 1], "newline"),
            (&note.replace('\n', "\r\n"), "control character"),
            (&note.replacen("\n\n", "\n", 1), "blank line"),
            (&format!("{note}\n"), "no signature lines"),
            (&note.replacen('\u{2014}', "--", 1), "signature line"),
            (&note.replacen("\n1042\n", "\n01042\n", 1), "leading zeros"),
            (&note.replacen("\n1042\n", "\n-1\n", 1), "decimal"),
            (&note.replacen("\n1042\n", "\n99999999999999999999999\n", 1), "too large"),
            (&format!("{}\n{}", checkpoint.origin, &note[checkpoint.body().len()..]), "three non-empty lines"),
        ];
        for (text, reason) in cases {
            match Checkpoint::open(text, &verifier) {
                Err(CheckpointError::Malformed(why)) => assert!(why.contains(reason), "{text:?}: {why} (expected {reason:?})"),
                other => panic!("{text:?} should be malformed ({reason}), got {other:?}"),
            }
        }
        let short_hash = note.replacen(&BASE64.encode(checkpoint.hash.as_bytes()), &BASE64.encode([1u8; 31]), 1);
        assert!(matches!(Checkpoint::open(&short_hash, &verifier), Err(CheckpointError::Malformed(why)) if why.contains("32 bytes")));
    }

    #[test]
    fn verifier_keys_round_trip_and_malformed_ones_are_refused() {
        let verifier = key(7).verifier("keyledger/0123456789abcdef");
        assert_eq!(Verifier::from_vkey(&verifier.to_vkey()).ok(), Some(verifier.clone()));
        // Base64 keys may contain `+`: only the first two separate the parts.
        let plus =
            (0..=255u8).map(|b| key(b).verifier("n")).find(|v| v.to_vkey().matches('+').count() > 2).expect("a key with + in its base64");
        assert_eq!(Verifier::from_vkey(&plus.to_vkey()).ok(), Some(plus));
        let vkey = verifier.to_vkey();
        let (name, rest) = vkey.split_once('+').expect("name");
        let (id, key) = rest.split_once('+').expect("id");
        for bad in [
            String::new(),
            format!("{name}+{id}"),
            format!("{name}+{id}+{key}+"),
            format!("other/name+{id}+{key}"),
            format!("{name}+0000000+{key}"),
            format!("{name}+{id}+!!!"),
            format!("{name}+{id}+{}", BASE64.encode([2u8; 33])),
        ] {
            assert!(matches!(Verifier::from_vkey(&bad), Err(CheckpointError::VerifierKey(_))), "{bad:?} must be refused");
        }
    }

    #[test]
    fn keys_load_from_hex_and_never_show_their_seed() {
        let seed = "07".repeat(32);
        let key = AuditKey::from_hex(&format!("{seed}\n"), "test").expect("hex seed");
        assert_eq!(key.verifier("n"), self::key(7).verifier("n"));
        assert!(!format!("{key:?}").contains(&seed));
        for bad in ["", "07", &"0g".repeat(32), &"é".repeat(32)] {
            let error = AuditKey::from_hex(bad, "KEYLEDGER_AUDIT_KEY").expect_err("malformed seed");
            assert!(error.to_string().contains("KEYLEDGER_AUDIT_KEY"), "{error}");
        }
    }

    #[test]
    fn a_key_file_is_created_once_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load_key_file(dir.path()).expect("no key yet").is_none());
        let (created, how) = load_or_create_key_file(dir.path()).expect("create");
        assert_eq!(how, KeyFile::Created);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (loaded, how) = load_or_create_key_file(dir.path()).expect("load");
        assert_eq!(how, KeyFile::Existing);
        assert_eq!(loaded.verifier("n"), created.verifier("n"));
        assert!(!dir.path().join(format!("{KEY_FILE}.tmp")).exists());
    }
}
