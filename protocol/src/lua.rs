//! The Lua scripts the order service and the consumers run, as the source Redis receives.
//! Redis scripts cannot import one another, so the shared definitions (`lua/common_lib.lua`,
//! `lua/dead_letter_lib.lua`) are put in front of each script that needs them, here, once.
//! Running them (by SHA, with their arguments) is `redis_io::scripts`'s job.

/// A script that writes orders, with what such scripts share in front of it.
macro_rules! with_common {
    ($file:literal) => {
        concat!(include_str!("lua/common_lib.lua"), include_str!($file))
    };
}

/// A script that dead-letters orders, with the one definition of doing so in front of it.
macro_rules! dead_lettering {
    ($file:literal) => {
        concat!(
            include_str!("lua/common_lib.lua"),
            include_str!("lua/dead_letter_lib.lua"),
            include_str!($file)
        )
    };
}

/// Records an order and hands it to the fleet (the order service).
pub const ACCEPT: &str = with_common!("lua/accept.lua");
/// Applies a batch of orders exactly once (the consumers).
pub const APPLY: &str = dead_lettering!("lua/apply.lua");
/// Releases pub/sub leases a consumer hands back on shutdown.
pub const RELEASE: &str = include_str!("lua/release.lua");
/// Moves a streams entry that exhausted its deliveries to the dead letter.
pub const DEAD_LETTER: &str = dead_lettering!("lua/dead_letter.lua");
/// Counts pub/sub refusals and dead-letters an order refused too often.
pub const REFUSED: &str = dead_lettering!("lua/refused.lua");
/// Puts a dead letter back in front of the fleet.
pub const REPLAY: &str = with_common!("lua/replay.lua");
/// Removes departed consumers from the streams group.
pub const FORGET_CONSUMERS: &str = include_str!("lua/forget_consumers.lua");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_that_write_orders_carry_the_shared_definitions() {
        let common = include_str!("lua/common_lib.lua");
        let dead_letter = include_str!("lua/dead_letter_lib.lua");
        for (script, file) in [
            (ACCEPT, include_str!("lua/accept.lua")),
            (REPLAY, include_str!("lua/replay.lua")),
        ] {
            assert_eq!(script, [common, file].concat());
        }
        for (script, file) in [
            (APPLY, include_str!("lua/apply.lua")),
            (DEAD_LETTER, include_str!("lua/dead_letter.lua")),
            (REFUSED, include_str!("lua/refused.lua")),
        ] {
            assert_eq!(script, [common, dead_letter, file].concat());
        }
    }
}
