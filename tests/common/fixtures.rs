//! The fixture organizations: `fixtures/directory.example.json` (Acme) and
//! `fixtures/directory.other-org.json` (Globex).

use std::path::{Path, PathBuf};

use serde_json::Value;

pub const PLATFORM_TEAM: &str = "6f1c1a52-2d0e-4c39-9a57-6b1f3a0d2e11";
pub const SECURITY_TEAM: &str = "0b7d7c5e-8f43-4f4e-b1a9-2f5f0c9d8a22";
pub const GLOBEX_TEAM: &str = "9a3e4b2c-1d5f-4a6b-8c7d-0e1f2a3b4c55";

/// Every fixture user, with their organization, in the directory files' order.
pub const USERS: [(&str, &str); 9] = [
    ("Acme", "alice@acme.test"),
    ("Acme", "bob@acme.test"),
    ("Acme", "carol@acme.test"),
    ("Acme", "dave@acme.test"),
    ("Acme", "erin@acme.test"),
    ("Acme", "frank@acme.test"),
    ("Acme", "grace@acme.test"),
    ("Globex", "hank@globex.test"),
    ("Globex", "ivy@globex.test"),
];

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The email of a fixture user, by first name ("alice", "hank", ...).
pub fn email_of(who: &str) -> String {
    match who {
        "hank" | "ivy" => format!("{who}@globex.test"),
        _ => format!("{who}@acme.test"),
    }
}

/// The Acme fixture as JSON, to modify.
pub fn acme_directory() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("directory.example.json")).unwrap()).unwrap()
}
