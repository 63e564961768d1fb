//! The least-privilege Redis ACL users of one fleet: the keys of its channel, its channel, and
//! exactly the commands each deployable sends, Lua scripts included (ACLs apply to every
//! `redis.call` too). The README's `ACL SETUSER` lines and the tests' users are rendered here.

use crate::keys::{Channel, Keys};
use crate::redis_version::Version;

/// Which deployable a user is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Consumer,
    OrderService,
}

pub const DEFAULT_CONSUMER_USER: &str = "eo-consumer";
pub const DEFAULT_ORDER_SERVICE_USER: &str = "eo-order-service";

/// What the rendered lines hold in place of the password.
pub const PASSWORD_PLACEHOLDER: &str = "<password>";

/// A command (or `command|subcommand`) a user may run, and the first Redis that has it: an older
/// one refuses an ACL rule naming a command it does not know, and answers that command with
/// "unknown subcommand" before any ACL check, so it needs no rule there.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    command: &'static str,
    since: Option<Version>,
}

const fn always(command: &'static str) -> Allowed {
    Allowed {
        command,
        since: None,
    }
}

const REDIS_7_2: Version = Version(7, 2, 0);

/// What every connection of ours sends besides its work: redis-rs names its library on connect
/// (`CLIENT SETINFO`, Redis 7.2+) and selects the URL's database (`SELECT`, when not 0; the key
/// patterns hold in every database), and the version check reads `INFO server`. Both
/// deployables run their scripts by SHA and load them after a Redis restart.
const SHARED: &[Allowed] = &[
    Allowed {
        command: "client|setinfo",
        since: Some(REDIS_7_2),
    },
    always("select"),
    always("info"),
    always("evalsha"),
    always("script|load"),
];

/// The order service: the inventory API (`HGET`, `HGETALL`, `HSET`), the delivery-mode
/// announcement (`SET`), the consumer group it creates in streams mode, and `accept.lua`
/// (`TIME`, `TYPE`, `HMGET`, `HSET`, `XADD` or `PUBLISH`, `ZADD`).
const ORDER_SERVICE: &[Allowed] = &[
    always("hget"),
    always("hgetall"),
    always("hset"),
    always("set"),
    always("xgroup|create"),
    always("time"),
    always("type"),
    always("hmget"),
    always("xadd"),
    always("publish"),
    always("zadd"),
];

/// The consumer: the delivery-mode check (`GET`); pubsub intake, its keep-alive, leases and
/// re-drive (`SUBSCRIBE`, `PING`, `SET NX PX`, `ZRANGEBYSCORE`, `ZCARD`, `ZREM`, `HGET`, `TIME`); streams intake
/// and reclaim (`XGROUP CREATE`, `XREADGROUP`, `XPENDING`, `XLEN`, `XCLAIM`); the scripts
/// `apply.lua` and `refused.lua` (`TYPE`, `HMGET`, `HSET`, `HDEL`, `PEXPIRE`, `HINCRBY`, `XACK`,
/// `XDEL`, `ZREM`, and `XADD` to dead-letter), `release.lua` (`GET`, `DEL`), `dead_letter.lua`,
/// `forget_consumers.lua` (`XINFO CONSUMERS`, `XGROUP DELCONSUMER`). Last, what its
/// `dead-letters` subcommand needs, which an operator runs with the consumer's own settings:
/// `XRANGE` and `XREVRANGE` to page through the dead letters, and `replay.lua`, which re-delivers as the order service would (`PERSIST`,
/// `XADD` or `PUBLISH`, `ZADD`).
const CONSUMER: &[Allowed] = &[
    always("ping"),
    always("get"),
    always("set"),
    always("del"),
    always("subscribe"),
    always("zrangebyscore"),
    always("zcard"),
    always("zrem"),
    always("hget"),
    always("time"),
    always("xgroup|create"),
    always("xreadgroup"),
    always("xpending"),
    always("xlen"),
    always("xclaim"),
    always("type"),
    always("hmget"),
    always("hset"),
    always("hdel"),
    always("pexpire"),
    always("hincrby"),
    always("xadd"),
    always("xack"),
    always("xdel"),
    always("xinfo|consumers"),
    always("xgroup|delconsumer"),
    always("xrange"),
    always("xrevrange"),
    always("persist"),
    always("publish"),
    always("zadd"),
];

/// The `ACL SETUSER` arguments after the command itself, for `user` of `role` on `channel`,
/// on a Redis of `version`. Re-running them changes nothing but adds `password`.
pub fn setuser_args(
    role: Role,
    user: &str,
    password: &str,
    channel: &Channel,
    version: Version,
) -> Vec<String> {
    let specific = match role {
        Role::Consumer => CONSUMER,
        Role::OrderService => ORDER_SERVICE,
    };
    let mut args = vec![
        user.to_owned(),
        "on".to_owned(),
        format!(">{password}"),
        "resetkeys".to_owned(),
        format!("~{}", key_pattern(channel)),
        "resetchannels".to_owned(),
        format!("&{channel}"),
        "-@all".to_owned(),
    ];
    args.extend(
        SHARED
            .iter()
            .chain(specific)
            .filter(|a| a.since.is_none_or(|since| version >= since))
            .map(|a| format!("+{}", a.command)),
    );
    args
}

/// One `ACL SETUSER` line (every rule, the password a placeholder), as the README shows it and
/// as `redis-cli` takes it.
pub fn render(role: Role, user: &str, channel: &Channel) -> String {
    let args = setuser_args(role, user, PASSWORD_PLACEHOLDER, channel, Version::LATEST);
    format!("ACL SETUSER {}", args.join(" "))
}

/// Every key of the fleet on `channel`. A literal prefix: channel names hold no glob character
/// (`Channel` allows none), so the pattern cannot reach another fleet's keys.
pub fn key_pattern(channel: &Channel) -> String {
    format!("{}*", Keys::new(channel).prefix())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::OrderId;

    fn channel() -> Channel {
        "order_updates".parse().unwrap()
    }

    #[test]
    fn the_readme_publishes_exactly_these_rules() {
        let readme = include_str!("../../README.md");
        for (role, user) in [
            (Role::Consumer, DEFAULT_CONSUMER_USER),
            (Role::OrderService, DEFAULT_ORDER_SERVICE_USER),
        ] {
            let line = render(role, user, &channel());
            assert!(readme.contains(&line), "README.md lacks:\n{line}");
        }
    }

    #[test]
    fn the_consumer_line_reads_as_the_readme_shows_it() {
        assert_eq!(
            render(Role::Consumer, DEFAULT_CONSUMER_USER, &channel()),
            "ACL SETUSER eo-consumer on ><password> resetkeys ~eo:{order_updates}:* \
             resetchannels &order_updates -@all +client|setinfo +select +info +evalsha \
             +script|load +ping +get +set +del +subscribe +zrangebyscore +zcard +zrem +hget \
             +time +xgroup|create +xreadgroup +xpending +xlen +xclaim +type +hmget +hset +hdel \
             +pexpire +hincrby +xadd +xack +xdel +xinfo|consumers +xgroup|delconsumer +xrange \
             +xrevrange +persist +publish +zadd"
        );
    }

    #[test]
    fn the_order_service_line_reads_as_the_readme_shows_it() {
        assert_eq!(
            render(Role::OrderService, DEFAULT_ORDER_SERVICE_USER, &channel()),
            "ACL SETUSER eo-order-service on ><password> resetkeys ~eo:{order_updates}:* \
             resetchannels &order_updates -@all +client|setinfo +select +info +evalsha \
             +script|load +hget +hgetall +hset +set +xgroup|create +time +type +hmget +xadd \
             +publish +zadd"
        );
    }

    #[test]
    fn a_redis_before_7_2_gets_no_rule_for_client_setinfo() {
        let v7_0 = "7.0.15".parse::<Version>().unwrap();
        let args = setuser_args(Role::Consumer, "u", "pw", &channel(), v7_0);
        assert!(!args.iter().any(|a| a.contains("setinfo")), "{args:?}");
        let v7_2 = "7.2.4".parse::<Version>().unwrap();
        let args = setuser_args(Role::Consumer, "u", "pw", &channel(), v7_2);
        assert!(args.contains(&"+client|setinfo".to_owned()), "{args:?}");
    }

    #[test]
    fn the_password_is_given_as_a_redis_password_rule() {
        let args = setuser_args(
            Role::OrderService,
            "u",
            "s3cret",
            &channel(),
            Version::LATEST,
        );
        assert_eq!(args[..3], ["u", "on", ">s3cret"]);
    }

    #[test]
    fn the_key_pattern_covers_every_key_of_the_fleet_and_no_other_channel() {
        let keys = Keys::new(&channel());
        let pattern = key_pattern(&channel());
        let prefix = pattern.strip_suffix('*').unwrap();
        let id = OrderId::parse("orderId", "29").unwrap();
        for key in [
            keys.inventory(),
            keys.order(&id),
            keys.pending(),
            keys.lock(&id),
            keys.stream(),
            keys.dead_letter(),
            keys.delivery_mode(),
        ] {
            assert!(key.starts_with(prefix), "{key} is outside {pattern}");
        }
        let other = Keys::new(&"order_updates2".parse().unwrap());
        assert!(!other.inventory().starts_with(prefix));
    }

    /// `name` or `name|subcommand` of every `redis.call('NAME', 'SUB'...` in a script, including
    /// those through `pcall(redis.call, 'NAME', ...)`.
    fn script_commands(lua: &str) -> Vec<String> {
        lua.replace("pcall(redis.call, ", "redis.call(")
            .split("redis.call(")
            .skip(1)
            .map(|call| {
                let literals: Vec<&str> = call.split('\'').skip(1).step_by(2).take(2).collect();
                let name = literals[0].to_ascii_lowercase();
                match name.as_str() {
                    "xinfo" | "xgroup" => format!("{name}|{}", literals[1].to_ascii_lowercase()),
                    _ => name,
                }
            })
            .collect()
    }

    /// Who runs each script (`common_lib.lua` is the front of the scripts that write orders,
    /// `dead_letter_lib.lua` of the dead-lettering ones).
    fn runners(script: &str) -> Option<&'static [Role]> {
        match script {
            "accept.lua" => Some(&[Role::OrderService]),
            "common_lib.lua" => Some(&[Role::OrderService, Role::Consumer]),
            "apply.lua"
            | "refused.lua"
            | "dead_letter.lua"
            | "dead_letter_lib.lua"
            | "release.lua"
            | "forget_consumers.lua"
            | "replay.lua" => Some(&[Role::Consumer]),
            _ => None,
        }
    }

    #[test]
    fn every_command_of_every_script_is_allowed_to_the_role_that_runs_it() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua");
        let mut checked = 0;
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let roles = runners(&name)
                .unwrap_or_else(|| panic!("{name} is new: say which roles run it in runners()"));
            let commands = script_commands(&std::fs::read_to_string(&path).unwrap());
            assert!(!commands.is_empty(), "{name} calls nothing");
            for &role in roles {
                let args = setuser_args(role, "u", "pw", &channel(), Version::LATEST);
                for command in &commands {
                    assert!(
                        args.contains(&format!("+{command}")),
                        "{role:?} may not run {command}, which {name} calls"
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} scripts found in {dir}");
    }
}
