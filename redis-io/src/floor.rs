//! The Redis version floor as a readiness condition, the same in both binaries: below the
//! floor, `/readyz` is held down with both versions named, until a check finds a server at or
//! above it (an upgrade, or a failover to another server).

use protocol::redis_version::{self, Server};

use service::Readiness;

/// The readiness condition held while the server is older than the floor.
pub const CONDITION: &str = "redis-version";

/// Asks the server over `conn` what it is, and holds or releases `readiness` by the verdict.
/// A server below the floor comes back as an error, so callers retry it like any other failure.
pub async fn check(
    conn: &mut impl redis::aio::ConnectionLike,
    readiness: &Readiness,
) -> redis::RedisResult<Server> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    match redis_version::check(&info) {
        Ok(server) => {
            readiness.hold(CONDITION, None);
            Ok(server)
        }
        Err(refused) => {
            readiness.hold(CONDITION, Some(refused.to_string()));
            Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "unsupported Redis",
                refused.to_string(),
            )))
        }
    }
}
