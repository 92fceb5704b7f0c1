//! What every list shares: the query string, `page[number]` and `page[size]`, and a page as a
//! JSON:API document with `links` and `meta`. A list reads its own other parameters; one it
//! does not know is a 400 naming it.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use serde::Serialize;
use utoipa::ToSchema;

use super::errors::ApiError;
use crate::service::paging::{Paging, MAX_PAGE_SIZE};

/// The query string as (parameter, value) pairs, in order.
pub(super) fn pairs(query: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<Vec<(String, String)>, ApiError> {
    query.map(|Query(pairs)| pairs).map_err(|_| ApiError::bad_request("The query string is malformed."))
}

/// The largest page number: the largest integer every JSON client reads exactly (2^53 - 1),
/// so that the bound the OpenAPI document states is one the server can keep as stated.
const MAX_PAGE_NUMBER: u64 = 9_007_199_254_740_991;

/// The page parameters every list takes, for the OpenAPI document (the handlers read the
/// query by hand, to name a malformed parameter in the 400).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageParameters {
    /// The page, from 1.
    #[param(rename = "page[number]", minimum = 1, maximum = 9007199254740991_u64, default = 1)]
    _number: Option<usize>,
    /// Items per page.
    #[param(rename = "page[size]", minimum = 1, maximum = 100, default = 50)]
    _size: Option<usize>,
}

/// Reads `parameter` into `paging` if it is `page[number]` or `page[size]`; `Ok(false)` for
/// any other parameter, which is the list's to read.
pub(super) fn read_page_parameter(paging: &mut Paging, parameter: &str, value: &str) -> Result<bool, ApiError> {
    match parameter {
        "page[number]" => {
            paging.number =
                value.parse::<u64>().ok().filter(|n| (1..=MAX_PAGE_NUMBER).contains(n)).and_then(|n| usize::try_from(n).ok()).ok_or_else(
                    || ApiError::bad_parameter(parameter, format!("page[number] must be a whole number from 1 to {MAX_PAGE_NUMBER}.")),
                )?;
        }
        "page[size]" => {
            paging.size = value.parse().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                ApiError::bad_parameter(parameter, format!("page[size] must be a whole number from 1 to {MAX_PAGE_SIZE}."))
            })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The paging of a list that takes no other parameter.
pub(super) fn paging_only(pairs: &[(String, String)]) -> Result<Paging, ApiError> {
    let mut paging = Paging::default();
    for (parameter, value) in pairs {
        if !read_page_parameter(&mut paging, parameter, value)? {
            return Err(ApiError::bad_parameter(
                parameter,
                format!("{parameter} is not a parameter of this list; it takes page[number] and page[size]."),
            ));
        }
    }
    Ok(paging)
}

#[derive(Serialize, ToSchema)]
struct Links {
    #[serde(rename = "self")]
    this: String,
    first: String,
    #[schema(required = true)]
    prev: Option<String>,
    #[schema(required = true)]
    next: Option<String>,
    last: String,
}

#[derive(Serialize, ToSchema)]
struct Meta {
    current_page: usize,
    #[schema(required = true)]
    next_page: Option<usize>,
    #[schema(required = true)]
    prev_page: Option<usize>,
    total_count: usize,
    total_pages: usize,
}

/// A page of a list, with links to the other pages.
#[derive(Serialize, ToSchema)]
pub(super) struct ListDocument<T> {
    data: Vec<T>,
    links: Links,
    meta: Meta,
}

/// The URL of page `n` of the list at `path`, with every other parameter kept.
fn page_link(path: &str, pairs: &[(String, String)], n: usize) -> String {
    let number = n.to_string();
    let mut kept: Vec<(&str, &str)> = pairs.iter().filter(|(k, _)| k != "page[number]").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    kept.push(("page[number]", &number));
    format!("{path}?{}", serde_urlencoded::to_string(&kept).unwrap_or_default())
}

/// A page of the list at `path` (`data` are its resource objects, `total` counts the whole
/// list) as a JSON:API document, its links keeping the request's other parameters.
pub(super) fn document<T: Serialize>(path: &str, pairs: &[(String, String)], paging: Paging, total: usize, data: Vec<T>) -> Vec<u8> {
    let total_pages = paging.pages(total);
    let current = paging.number;
    let links = Links {
        this: page_link(path, pairs, current),
        first: page_link(path, pairs, 1),
        prev: (current > 1).then(|| page_link(path, pairs, (current - 1).min(total_pages))),
        next: (current < total_pages).then(|| page_link(path, pairs, current + 1)),
        last: page_link(path, pairs, total_pages),
    };
    let meta = Meta {
        current_page: current,
        next_page: (current < total_pages).then_some(current + 1),
        prev_page: (current > 1).then_some(current - 1),
        total_count: total,
        total_pages,
    };
    // Plain data with string keys: serialization cannot fail.
    serde_json::to_vec(&ListDocument { data, links, meta }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound the OpenAPI document states (schemathesis sent a page number past `usize`,
    /// which the document allowed and the server refused).
    #[test]
    fn page_numbers_are_read_from_1_to_the_documented_maximum() {
        let read = |value: &str| {
            let mut paging = Paging::default();
            read_page_parameter(&mut paging, "page[number]", value).map(|_| paging.number).map_err(|e| e.status().as_u16())
        };
        assert_eq!(read("1"), Ok(1));
        assert_eq!(read("9007199254740991"), Ok(9_007_199_254_740_991));
        for refused in ["0", "9007199254740992", "6460088009244054149924386032811245568", "-1", "x"] {
            assert_eq!(read(refused), Err(400), "{refused}");
        }
    }
}
