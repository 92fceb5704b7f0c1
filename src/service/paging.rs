//! Pages of a list: which page a request asks for, and that page cut out of an ordered list.
//! Every list of the API (keys, roles, on-call roles, teams) pages the same way.

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 100;

/// Which page: its number from 1 and how many items a page holds (1 to [`MAX_PAGE_SIZE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub number: usize,
    pub size: usize,
}

impl Default for Paging {
    fn default() -> Self {
        Paging { number: 1, size: DEFAULT_PAGE_SIZE }
    }
}

/// One page of a list and how many items the whole list has.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: usize,
}

impl<T> Page<T> {
    /// The same page with each item turned into another (e.g. a resource object).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), total: self.total }
    }
}

impl Paging {
    /// This page out of `items`, which must already be in the list's stable order (so that
    /// pages never overlap or skip an item between requests that change nothing).
    pub fn cut<T>(self, items: Vec<T>) -> Page<T> {
        let total = items.len();
        let start = self.number.saturating_sub(1).saturating_mul(self.size);
        Page { items: items.into_iter().skip(start).take(self.size).collect(), total }
    }

    /// How many pages a list of `total` items has; an empty list still has one (empty) page.
    pub fn pages(self, total: usize) -> usize {
        total.div_ceil(self.size).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_item_once() {
        let paging = |number| Paging { number, size: 3 };
        let cut: Vec<Vec<u8>> = (1..=4).map(|n| paging(n).cut((0..8).collect()).items).collect();
        assert_eq!(cut, [vec![0, 1, 2], vec![3, 4, 5], vec![6, 7], vec![]]);
        assert_eq!(paging(1).cut(vec![1, 2]).total, 2);
        assert_eq!((paging(1).pages(8), paging(1).pages(0)), (3, 1));
    }
}
