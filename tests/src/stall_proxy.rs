//! A loopback TCP proxy in front of a Redis server that can make connections open now
//! half-open: they stay open (no FIN, no RST) but nothing more crosses them either way, as when
//! a NAT entry dies or a path partitions. Connections made after a stall are forwarded
//! normally, as a client's reconnect would be.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub struct StallProxy {
    pub port: u16,
    connections: Arc<Mutex<Vec<Connection>>>,
    /// Accepts and owns every connection's task; aborting it on drop closes them all.
    task: JoinHandle<()>,
}

/// What the proxy keeps of one connection it forwards.
struct Connection {
    /// Its client has sent SUBSCRIBE: a Pub/Sub connection.
    subscriber: Arc<AtomicBool>,
    stall: watch::Sender<bool>,
}

impl StallProxy {
    /// Listens on a port of 127.0.0.1 the OS picks and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the proxy");
        let port = listener.local_addr().expect("a bound listener").port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept(listener, upstream, connections.clone()));
        StallProxy {
            port,
            connections,
            task,
        }
    }

    /// `redis://` URL of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops forwarding on every connection open now, leaving it open; returns how many.
    pub fn stall_all(&self) -> usize {
        self.stall_where(|_| true)
    }

    /// Stops forwarding on the open connections whose client has subscribed (its Pub/Sub
    /// connections), leaving them open; returns how many.
    pub fn stall_subscribers(&self) -> usize {
        self.stall_where(|c| c.subscriber.load(Ordering::SeqCst))
    }

    fn stall_where(&self, pick: impl Fn(&Connection) -> bool) -> usize {
        let mut connections = self.connections.lock().expect("no panic while locked");
        // A closed sender has lost its receiver: that connection has ended.
        connections.retain(|c| !c.stall.is_closed());
        let picked: Vec<&Connection> = connections.iter().filter(|c| pick(c)).collect();
        for connection in &picked {
            connection.stall.send_replace(true);
        }
        picked.len()
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    connections: Arc<Mutex<Vec<Connection>>>,
) {
    let mut tasks = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let subscriber = Arc::new(AtomicBool::new(false));
        let (stall, stalled) = watch::channel(false);
        connections
            .lock()
            .expect("no panic while locked")
            .push(Connection {
                subscriber: subscriber.clone(),
                stall,
            });
        tasks.spawn(forward(client, upstream, subscriber, stalled));
        // Reap the finished ones so a long test does not accumulate them.
        while tasks.try_join_next().is_some() {}
    }
}

/// Forwards both ways until either side closes, or until stalled; then holds both sockets open
/// and silent until the proxy is dropped.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    subscriber: Arc<AtomicBool>,
    mut stalled: watch::Receiver<bool>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // the client sees its connection close, as if the server refused it
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            // One read holds a whole short command on loopback, so the name is not split.
            if buf[..n]
                .windows(b"SUBSCRIBE".len())
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                subscriber.store(true, Ordering::SeqCst);
            }
            to_server.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = upward => return,
        _ = tokio::io::copy(&mut from_server, &mut to_client) => return,
        _ = stalled.wait_for(|&stalled| stalled) => {}
    }
    // The four halves stay open, unread and unwritten, as long as this task.
    std::future::pending::<()>().await;
}
