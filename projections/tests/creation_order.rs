//! The creation-ordered set behind the keys view's slices: given inserts and removals in any
//! order, then the same ids, in the same order, as a sorted list of them.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use keyledger_projections::creation_order::{Creation, CreationOrder};
use uuid::Uuid;

/// A deterministic stream of numbers (no randomness crate in this one).
struct Draws(u64);

impl Draws {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn any_history_of_inserts_and_removals_walks_like_a_sorted_list() {
    let mut draws = Draws(7);
    for round in 0..40 {
        let mut set = CreationOrder::default();
        let mut at: HashMap<Uuid, Creation> = HashMap::new();
        let mut model: Vec<(Creation, Uuid)> = Vec::new();
        let mostly_appends = round % 2 == 0;
        for position in 1..=3000u64 {
            if model.is_empty() || draws.below(4) != 0 {
                let seconds = if mostly_appends { position as i64 - draws.below(3) as i64 } else { draws.below(200) as i64 };
                let created_at = Utc.timestamp_opt(1_700_000_000 + seconds, 0).single().unwrap_or_default();
                let id = Uuid::from_u128(u128::from(position));
                set.insert(id, (created_at, position), |other| at.get(other).copied());
                at.insert(id, (created_at, position));
                model.push(((created_at, position), id));
            } else {
                let (creation, id) = model.swap_remove(draws.below(model.len() as u64) as usize);
                assert!(set.remove(id, creation, |other| at.get(other).copied()));
                at.remove(&id);
                assert!(!set.remove(id, creation, |other| at.get(other).copied()), "only once");
            }
        }
        model.sort();
        let ids: Vec<Uuid> = model.iter().map(|(_, id)| *id).collect();
        assert_eq!(set.len(), ids.len());
        for skip in [0, 1, 511, 512, 513, ids.len() / 2, ids.len() - 1, ids.len(), ids.len() + 5] {
            assert!(set.oldest_first(skip).eq(ids.iter().skip(skip).copied()), "round {round}, oldest first from {skip}");
            assert!(set.newest_first(skip).eq(ids.iter().rev().skip(skip).copied()), "round {round}, newest first from {skip}");
        }
        let mut fresh = CreationOrder::default();
        for (creation, id) in &model {
            fresh.insert(*id, *creation, |other| at.get(other).copied());
        }
        assert_eq!(fresh, set, "equal whatever the chunks");
    }
}
