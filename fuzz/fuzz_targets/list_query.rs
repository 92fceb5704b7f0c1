//! The query-string reader of `GET /v1/api_keys` (`keyledger::http::request_documents::list_query`).
//!
//! Invariants: a query is read into a page within bounds (number ≥ 1, size 1–100) or refused
//! with 400; an accepted query read twice reads the same.
#![no_main]

use keyledger::http::request_documents;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    match request_documents::list_query(query) {
        Ok(read) => {
            assert!(read.paging.number >= 1, "page[number] {} accepted", read.paging.number);
            assert!((1..=100).contains(&read.paging.size), "page[size] {} accepted", read.paging.size);
            assert_eq!(request_documents::list_query(query).ok(), Some(read));
        }
        Err(error) => assert_eq!(error.status().as_u16(), 400),
    }
});
