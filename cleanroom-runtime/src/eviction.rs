//! Which cached things go, for every cache layer: one planner, four
//! strategies. The design pairs each layer with a strategy (container →
//! LRU, image → TTL, network → LFU, volume → MRU); each layer's strategy is
//! a setting (`caches.<layer>.eviction`), and its default is the design's
//! pairing except for volumes, which keep the least-recently-used order they
//! always had (docs/caches.md says why).
//!
//! Every strategy first removes what has outlived the layer's TTL, then, while
//! what is left is over the layer's cap (a count, or bytes), removes one more
//! in the strategy's order:
//!
//! | strategy | over the cap, first to go | the TTL counts from |
//! |---|---|---|
//! | `lru` | the least recently used | the last use |
//! | `lfu` | the least often used (then the least recently) | the last use |
//! | `mru` | the most recently used | the last use |
//! | `ttl` | the oldest made | its creation |
//!
//! MRU suits a cache that is scanned in a cycle larger than its cap (the
//! entry just used is the one least likely to be used again soon); LRU suits
//! one whose recent entries are reused, as a developer's runs reuse the
//! cluster of the branch they are on.

use std::time::Duration;

/// How a cache layer picks what to remove when it is over its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Least recently used first.
    Lru,
    /// Least frequently used first.
    Lfu,
    /// Most recently used first.
    Mru,
    /// Oldest made first; the TTL counts from creation, not from last use.
    Ttl,
}

impl Eviction {
    /// The names `caches.<layer>.eviction` accepts.
    pub const NAMES: [&'static str; 4] = ["lru", "lfu", "mru", "ttl"];

    /// The strategy named `name` (`lru`, `lfu`, `mru`, `ttl`).
    pub fn parse(name: &str) -> Option<Eviction> {
        match name.trim().to_ascii_lowercase().as_str() {
            "lru" => Some(Eviction::Lru),
            "lfu" => Some(Eviction::Lfu),
            "mru" => Some(Eviction::Mru),
            "ttl" => Some(Eviction::Ttl),
            _ => None,
        }
    }

    /// Its name in settings and reports.
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Lfu => "lfu",
            Eviction::Mru => "mru",
            Eviction::Ttl => "ttl",
        }
    }
}

/// How much a cache layer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// No more than this many entries.
    Count(usize),
    /// No more than this many bytes in all.
    Bytes(u64),
}

/// One cached thing as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) name: String,
    /// Seconds since the epoch when it was made.
    pub(crate) created: i64,
    /// Seconds since the epoch of its last use.
    pub(crate) last_use: i64,
    /// How many times it was used.
    pub(crate) uses: u64,
    pub(crate) size: u64,
}

/// The names of the items to remove, in the order they go: those past
/// `ttl` (from last use, or from creation for [`Eviction::Ttl`]), then one
/// at a time in the strategy's order while the rest is over `cap`.
pub(crate) fn plan(
    items: &[Item],
    strategy: Eviction,
    ttl: Option<Duration>,
    cap: Option<Cap>,
    now: i64,
) -> Vec<String> {
    let expired = |i: &Item| {
        let since = if strategy == Eviction::Ttl { i.created } else { i.last_use };
        ttl.is_some_and(|ttl| now.saturating_sub(since) >= ttl.as_secs() as i64)
    };
    let (gone, mut kept): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| expired(i));
    let mut evicted: Vec<String> = gone.iter().map(|i| i.name.clone()).collect();
    kept.sort_by(|a, b| {
        let order = match strategy {
            Eviction::Lru => a.last_use.cmp(&b.last_use),
            Eviction::Lfu => a.uses.cmp(&b.uses).then(a.last_use.cmp(&b.last_use)),
            Eviction::Mru => b.last_use.cmp(&a.last_use),
            Eviction::Ttl => a.created.cmp(&b.created),
        };
        order.then_with(|| a.name.cmp(&b.name))
    });
    let over = |kept: &[&Item]| match cap {
        None => false,
        Some(Cap::Count(n)) => kept.len() > n,
        Some(Cap::Bytes(b)) => kept.iter().map(|i| i.size).sum::<u64>() > b,
    };
    let mut next = 0;
    while next < kept.len() && over(&kept[next..]) {
        evicted.push(kept[next].name.clone());
        next += 1;
    }
    evicted
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        const NOW: i64 = 1_000_000;

        fn item(name: &str, created: i64, last_use: i64, uses: u64, size: u64) -> Item {
            Item { name: name.into(), created: NOW - created, last_use: NOW - last_use, uses, size }
        }

        /// The same four entries for every strategy: `old` made first and
        /// used often, `hot` used most recently, `rare` used once, `mid`
        /// in between.
        fn entries() -> Vec<Item> {
            vec![
                item("old", 900, 300, 9, 100),
                item("rare", 600, 200, 1, 100),
                item("mid", 500, 100, 5, 100),
                item("hot", 400, 10, 3, 100),
            ]
        }

        fn first_to_go(strategy: Eviction) -> Vec<String> {
            plan(&entries(), strategy, None, Some(Cap::Count(2)), NOW)
        }

        #[test]
        fn pick_each_strategys_victims_from_the_same_entries() {
            assert_eq!(first_to_go(Eviction::Lru), ["old", "rare"], "least recently used");
            assert_eq!(first_to_go(Eviction::Lfu), ["rare", "hot"], "least often used");
            assert_eq!(first_to_go(Eviction::Mru), ["hot", "mid"], "most recently used");
            assert_eq!(first_to_go(Eviction::Ttl), ["old", "rare"], "oldest made");
        }

        #[test]
        fn count_the_ttl_from_last_use_or_for_ttl_from_creation() {
            let ttl = Some(Duration::from_secs(450));
            assert!(plan(&entries(), Eviction::Lru, ttl, None, NOW).is_empty(), "all used within 450 s");
            assert_eq!(plan(&entries(), Eviction::Ttl, ttl, None, NOW), ["old", "rare", "mid"], "made over 450 s ago");
            let short = Some(Duration::from_secs(150));
            assert_eq!(plan(&entries(), Eviction::Mru, short, None, NOW), ["old", "rare"]);
        }

        #[test]
        fn remove_the_expired_first_then_go_on_over_a_byte_cap() {
            let ttl = Some(Duration::from_secs(250));
            assert_eq!(plan(&entries(), Eviction::Lru, ttl, Some(Cap::Bytes(150)), NOW), ["old", "rare", "mid"]);
            assert_eq!(plan(&entries(), Eviction::Lru, None, Some(Cap::Bytes(400)), NOW), Vec::<String>::new());
            assert_eq!(plan(&entries(), Eviction::Lru, None, Some(Cap::Bytes(0)), NOW).len(), 4);
        }

        #[test]
        fn keep_everything_without_a_ttl_or_a_cap() {
            for s in [Eviction::Lru, Eviction::Lfu, Eviction::Mru, Eviction::Ttl] {
                assert!(plan(&entries(), s, None, None, NOW).is_empty(), "{s:?}");
            }
        }

        #[test]
        fn read_the_names_settings_give() {
            for name in Eviction::NAMES {
                assert_eq!(Eviction::parse(name).map(Eviction::name), Some(name));
            }
            assert_eq!(Eviction::parse(" LRU "), Some(Eviction::Lru));
            assert_eq!(Eviction::parse("fifo"), None);
        }
    }
}
