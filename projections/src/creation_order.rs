//! An ordered set of key ids, kept in chunks so that a million of them cost little more than
//! their 16 bytes each: keys are created in order, so an insert is nearly always an append
//! that fills the last chunk completely; a removal (a revoke) moves at most one chunk; and a
//! walk starts at any offset by skipping whole chunks, which is what lets listing read one
//! page without touching the keys before it. The set does not know where an id sorts; the
//! caller says, for the id it inserts or removes and for any id already in the set.

use uuid::Uuid;

/// Where a key sorts in creation order: its `created_at`, ties broken by its position.
pub type Creation = (chrono::DateTime<chrono::Utc>, u64);

/// Ids per chunk at most: an insert or removal in the middle moves at most 8 KiB.
const CHUNK: usize = 512;

#[derive(Clone, Debug, Default)]
pub struct CreationOrder {
    chunks: Vec<Vec<Uuid>>,
    len: usize,
    /// Where the last id sorts, so that an append decides without asking where it sorts.
    last: Option<Creation>,
}

/// Two sets are equal when they hold the same ids; how they are chunked depends on history.
impl PartialEq for CreationOrder {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.oldest_first(0).eq(other.oldest_first(0))
    }
}

impl CreationOrder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `id`, which sorts at `at` and must not be in the set yet.
    pub fn insert(&mut self, id: Uuid, at: Creation, sorts_at: impl Fn(&Uuid) -> Option<Creation>) {
        self.len += 1;
        if self.last.is_none_or(|last| last < at) {
            self.last = Some(at);
            match self.chunks.last_mut() {
                Some(chunk) if chunk.len() < CHUNK => chunk.push(id),
                _ => self.chunks.push(vec![id]),
            }
            return;
        }
        let before = |other: &Uuid| sorts_at(other).is_some_and(|other| other < at);
        let c = self.chunks.partition_point(|chunk| chunk.last().is_some_and(before)).min(self.chunks.len().saturating_sub(1));
        let Some(chunk) = self.chunks.get_mut(c) else { return };
        chunk.insert(chunk.partition_point(before), id);
        if chunk.len() > CHUNK {
            let upper = chunk.split_off(CHUNK / 2);
            self.chunks.insert(c + 1, upper);
        }
    }

    /// Takes `id`, which sorts at `at`, out of the set; whether it was there.
    pub fn remove(&mut self, id: Uuid, at: Creation, sorts_at: impl Fn(&Uuid) -> Option<Creation>) -> bool {
        let before = |other: &Uuid| *other != id && sorts_at(other).is_some_and(|other| other < at);
        let c = self.chunks.partition_point(|chunk| chunk.last().is_some_and(before));
        let Some(chunk) = self.chunks.get_mut(c) else { return false };
        let slot = chunk.partition_point(before);
        if chunk.get(slot) != Some(&id) {
            return false;
        }
        chunk.remove(slot);
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        self.len -= 1;
        if self.last == Some(at) {
            self.last = self.chunks.last().and_then(|chunk| chunk.last()).and_then(&sorts_at);
        }
        true
    }

    /// The chunk and slot of the `index`th id (the chunk count and 0 past the end).
    fn locate(&self, mut index: usize) -> (usize, usize) {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if index < chunk.len() {
                return (c, index);
            }
            index -= chunk.len();
        }
        (self.chunks.len(), 0)
    }

    /// The ids from the oldest on, the first `skip` left out.
    pub fn oldest_first(&self, skip: usize) -> impl Iterator<Item = Uuid> + '_ {
        let (c, slot) = self.locate(skip);
        let first = self.chunks.get(c).map_or(&[][..], |chunk| &chunk[slot..]);
        let rest = self.chunks.get(c + 1..).unwrap_or_default();
        first.iter().chain(rest.iter().flatten()).copied()
    }

    /// The ids from the newest on (exactly the reverse of [`Self::oldest_first`]), the first
    /// `skip` left out.
    pub fn newest_first(&self, skip: usize) -> impl Iterator<Item = Uuid> + '_ {
        let (c, slot) = self.locate(self.len.saturating_sub(skip));
        let first = self.chunks.get(c).map_or(&[][..], |chunk| &chunk[..slot]);
        let rest = self.chunks.get(..c).unwrap_or_default();
        first.iter().rev().chain(rest.iter().rev().flat_map(|chunk| chunk.iter().rev())).copied()
    }
}
