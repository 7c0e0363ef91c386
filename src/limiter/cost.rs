//! What a call does with its cost, told apart once from the signed number.

/// A call's cost, classified: the algorithms take units, give them back, or
/// only report their state. Every step and `RL.LIMITS` branch on this, never
/// on the sign of the number again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// A positive cost: consume this many units if they are there.
    Take(u64),
    /// A negative cost: a refund of this many units, always allowed, never
    /// above the limiter's full state, and stored like a grant.
    GiveBack(u64),
    /// A cost of 0: takes nothing, so it is always allowed and writes
    /// nothing (even when a lowered limit leaves the limiter over its new
    /// limit; it then reports 0 remaining).
    Read,
}

impl From<i64> for Cost {
    fn from(cost: i64) -> Self {
        match u64::try_from(cost) {
            Ok(0) => Cost::Read,
            Ok(units) => Cost::Take(units),
            Err(_) => Cost::GiveBack(cost.unsigned_abs()),
        }
    }
}

impl Cost {
    /// Whether a granted call with this cost changes the state.
    pub fn writes(self) -> bool {
        self != Cost::Read
    }

    /// The units taken (0 for a refund or a read).
    pub fn taken(self) -> u64 {
        match self {
            Cost::Take(units) => units,
            Cost::GiveBack(_) | Cost::Read => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_says_what_a_cost_does() {
        assert_eq!(Cost::from(0), Cost::Read);
        assert_eq!(Cost::from(3), Cost::Take(3));
        assert_eq!(Cost::from(-3), Cost::GiveBack(3));
        assert_eq!(Cost::from(i64::MIN), Cost::GiveBack(1 << 63));
        assert_eq!(Cost::from(i64::MAX), Cost::Take(i64::MAX as u64));
    }
}
