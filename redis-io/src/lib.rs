//! The Redis I/O the order service and the consumers share: connecting (URL, TLS, ACL
//! credentials: `args`, `client`, `conn`), the version floor as a readiness condition
//! (`floor`), the streams consumer group (`group`) and running the Lua scripts (`scripts`).
//! What the scripts and keys are lives in the pure `protocol` crate; the operator, which never
//! talks to Redis, depends on that one only.

pub mod args;
pub mod client;
pub mod conn;
pub mod floor;
pub mod group;
pub mod scripts;

pub use args::RedisArgs;
pub use conn::RedisConn;
