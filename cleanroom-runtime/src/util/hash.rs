//! A stable 64-bit FNV-1a hash: the same in every process and build, so that
//! processes of one run agree on names derived from contents (templates,
//! definitions, cache keys).

/// The FNV-1a offset basis: the hash of nothing.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into `hash` (start from [`FNV_OFFSET`]).
pub(crate) fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A hasher over explicit fields: each field is written with a separator, so
/// that `("ab", "c")` and `("a", "bc")` differ.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields(u64);

impl Fields {
    pub(crate) fn new() -> Self {
        Fields(FNV_OFFSET)
    }

    /// Adds one field.
    pub(crate) fn field(self, bytes: impl AsRef<[u8]>) -> Self {
        Fields(fnv1a(&[0xff], fnv1a(bytes.as_ref(), self.0)))
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

/// 32 hex digits nobody can guess, new on every call: from the standard
/// library's per-process random hash keys and the time (passwords of the
/// built-in services, the reaper's tokens).
pub(crate) fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    (0..2u64)
        .map(|i| {
            let mut h = state.build_hasher();
            h.write_u64(i);
            h.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
            );
            format!("{:016x}", h.finish())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn hash_like_the_reference_fnv1a() {
            assert_eq!(fnv1a(b"", FNV_OFFSET), FNV_OFFSET);
            assert_eq!(fnv1a(b"a", FNV_OFFSET), 0xaf63_dc4c_8601_ec8c);
        }

        #[test]
        fn keep_field_boundaries_apart() {
            let ab_c = Fields::new().field("ab").field("c").finish();
            let a_bc = Fields::new().field("a").field("bc").finish();
            assert_ne!(ab_c, a_bc);
        }
    }
}
