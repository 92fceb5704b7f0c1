//! The request-body readers of create, update and rotate (`keyledger::http::request_documents`),
//! all three on the same bytes.
//!
//! Invariants: a body is refused (400) exactly when it is not JSON (rotate: and not blank);
//! every problem points into the document with a well-formed JSON pointer, and a problem
//! about an attribute points at an attribute the document has, escaped (RFC 6901).
#![no_main]

use keyledger::http::request_documents;
use keyledger::service::rules::Problem;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The RFC 6901 reference token of `pointer` below `/data/attributes/`, unescaped; `None`
/// when it is not exactly one well-formed token.
fn attribute_named(pointer: &str) -> Option<String> {
    let token = pointer.strip_prefix("/data/attributes/")?;
    if token.contains('/') {
        return None;
    }
    let mut out = String::new();
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next()? {
                '0' => out.push('~'),
                '1' => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

fn check(problems: &[Problem], document: &Value, reader: &str) {
    let attributes = document.get("data").and_then(|d| d.get("attributes")).and_then(Value::as_object);
    for problem in problems {
        assert!(["/data", "/data/type", "/data/attributes"].contains(&problem.pointer.as_str()) || problem.pointer.starts_with("/data/attributes/"),
            "{reader}: pointer {:?} is outside the document", problem.pointer);
        if problem.pointer.starts_with("/data/attributes/") {
            let name = attribute_named(&problem.pointer)
                .unwrap_or_else(|| panic!("{reader}: pointer {:?} is not one escaped attribute name", problem.pointer));
            assert!(attributes.is_some_and(|a| a.contains_key(&name)), "{reader}: pointer {:?} names no attribute of the document", problem.pointer);
        }
        assert!(!problem.title.is_empty(), "{reader}: a problem without a title");
    }
}

fuzz_target!(|body: &[u8]| {
    let json = serde_json::from_slice::<Value>(body).ok();
    let blank = body.iter().all(u8::is_ascii_whitespace);

    match request_documents::create(body) {
        Ok(attributes) => check(&attributes.problems, json.as_ref().expect("create read a body that is not JSON"), "create"),
        Err(error) => {
            assert!(json.is_none(), "create refused JSON");
            assert_eq!(error.status().as_u16(), 400);
        }
    }
    match request_documents::update(body) {
        Ok(changes) => check(&changes.problems, json.as_ref().expect("update read a body that is not JSON"), "update"),
        Err(error) => {
            assert!(json.is_none(), "update refused JSON");
            assert_eq!(error.status().as_u16(), 400);
        }
    }
    match request_documents::rotate(body) {
        Ok(rotation) => {
            if blank {
                assert!(rotation.problems.is_empty() && rotation.expires_at.is_none() && rotation.grace_period_minutes.is_none());
            } else {
                check(&rotation.problems, json.as_ref().expect("rotate read a body that is not JSON"), "rotate");
            }
        }
        Err(error) => {
            assert!(json.is_none() && !blank, "rotate refused JSON or a blank body");
            assert_eq!(error.status().as_u16(), 400);
        }
    }
});
