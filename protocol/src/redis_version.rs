//! The oldest Redis the fleet runs on, and the check each binary makes against `INFO server`
//! before it works with a server.
//!
//! The floor is 6.2: streams reclaim filters `XPENDING` by `IDLE` (6.2), and the published ACL
//! rules grant channels with `&` (6.2). `XINFO CONSUMERS` `idle`, which departed-consumer
//! cleanup reads, counts from the last read *attempt* both before 7.2 and after (7.2 added
//! `inactive` for the last successful one), so it needs no branch. Valkey reports the Redis
//! version it is compatible with (`redis_version:7.2.4`) beside its own `valkey_version`.

use std::fmt;

/// Redis 6.2.0.
pub const FLOOR: Version = Version(6, 2, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Newer than any release: what a current managed Redis accepts.
    pub const LATEST: Version = Version(u32::MAX, u32::MAX, u32::MAX);
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl std::str::FromStr for Version {
    type Err = ();
    /// `7.0.15`, `6.2`, or `255.255.255` (an unreleased build).
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut parts = s
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().map_err(|_| ()));
        let major = parts.next().ok_or(())??;
        let minor = parts.next().transpose()?.unwrap_or(0);
        let patch = parts.next().transpose()?.unwrap_or(0);
        Ok(Version(major, minor, patch))
    }
}

/// What a server says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `redis` or `valkey` (`server_name`, absent before Valkey).
    pub name: String,
    /// The Redis version the server implements (Valkey's compatibility version).
    pub redis_version: Version,
    /// The server's own version when it is not Redis (`valkey_version`).
    pub own_version: Option<String>,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.own_version {
            Some(own) => write!(f, "{} {own} (Redis {})", self.name, self.redis_version),
            None => write!(f, "Redis {}", self.redis_version),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("INFO server has no readable redis_version field")]
    Unreadable,
    #[error(
        "{server} is older than {FLOOR}, the oldest Redis this fleet supports; upgrade the server"
    )]
    BelowFloor { server: Server },
}

/// Reads the `INFO server` reply.
pub fn parse_info(info: &str) -> Result<Server, VersionError> {
    let field = |name: &str| {
        info.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    };
    let redis_version = field("redis_version")
        .and_then(|v| v.parse().ok())
        .ok_or(VersionError::Unreadable)?;
    let name = field("server_name").unwrap_or_else(|| "redis".to_owned());
    let own_version = field(&format!("{name}_version")).filter(|_| name != "redis");
    Ok(Server {
        name,
        redis_version,
        own_version,
    })
}

/// The server, if it is at least the floor.
pub fn check(info: &str) -> Result<Server, VersionError> {
    let server = parse_info(info)?;
    if server.redis_version < FLOOR {
        return Err(VersionError::BelowFloor { server });
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_and_valkey() {
        let redis = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(
            check(redis).unwrap(),
            Server {
                name: "redis".into(),
                redis_version: Version(7, 0, 15),
                own_version: None
            }
        );
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.1\r\n";
        let server = check(valkey).unwrap();
        assert_eq!(server.own_version.as_deref(), Some("8.1.1"));
        assert_eq!(server.to_string(), "valkey 8.1.1 (Redis 7.2.4)");
    }

    #[test]
    fn refuses_a_server_below_the_floor_naming_both_versions() {
        let err = check("redis_version:6.0.16\r\n").unwrap_err().to_string();
        assert!(err.contains("6.0.16") && err.contains("6.2.0"), "{err}");
        assert!(check("redis_version:6.2.0\r\n").is_ok());
        assert!(check("redis_version:6.2\r\n").is_ok());
        assert!(check("redis_version:255.255.255\r\n").is_ok());
        assert_eq!(check("no version here"), Err(VersionError::Unreadable));
        assert_eq!(check("redis_version:seven"), Err(VersionError::Unreadable));
    }
}
