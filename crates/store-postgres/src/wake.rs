//! Wake-ups when another node commits a change: a connection of its own,
//! outside the pool, that LISTENs on `parapet_changes` (every statement
//! that appends to the change log NOTIFYs it, naming the node whose
//! change it is: schema 12). A notification is a hint only — the follower
//! then reads the log from its cursor ([`crate::changes`]), which is what
//! decides; one lost with a connection costs only the time until the
//! follower's own next read. So the other nodes' changes arrive in a few
//! milliseconds instead of at the next poll, and a node is not woken by
//! its own writes.
//!
//! The connection is made again a second after it fails (the database
//! restarting, a failover), with a wake-up once it listens again; it is
//! closed within a second of the store's last handle being dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Socket};

use crate::connect::{Target, Transport};

/// The channel the change log's trigger notifies.
const CHANNEL: &str = "parapet_changes";
/// How long after a failed or lost connection the next is tried.
const RETRY: Duration = Duration::from_secs(1);

/// The wake-ups a store's handles share.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    notify: Notify,
    started: AtomicBool,
}

impl Wake {
    /// Until another node may have committed a change (or the listening
    /// connection was made again). A wake-up that came while nobody
    /// waited is kept for the next call.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Starts listening (once per store; later calls do nothing).
    /// `own`: this node's id, whose own notifications are ignored.
    pub(crate) fn start(self: &Arc<Self>, target: &Target, own: String) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (config, transport, wake) = (
            target.config.clone(),
            target.transport.clone(),
            Arc::downgrade(self),
        );
        tokio::spawn(async move {
            let mut failing = false;
            while wake.strong_count() > 0 {
                let ended = match &transport {
                    Transport::Verified { roots } => match crate::connect::tls(roots) {
                        Ok(tls) => listen(&config, tls, &own, &wake).await,
                        Err(e) => Err(e.to_string()),
                    },
                    _ => listen(&config, tokio_postgres::NoTls, &own, &wake).await,
                };
                match ended {
                    Ok(()) => return,
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "not woken by the other nodes' changes (reading the change log on a timer until the connection is back)");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(RETRY).await;
            }
        });
    }
}

/// One listening connection, until it fails (`Err`) or the store is gone
/// (`Ok`).
async fn listen<T>(
    config: &tokio_postgres::Config,
    tls: T,
    own: &str,
    wake: &Weak<Wake>,
) -> Result<(), String>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = config.connect(tls).await.map_err(|e| crate::describe(&e))?;
    // The connection is driven here; notifications come out of it. A
    // full channel drops them: a wake-up is already waiting.
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = tx.try_send(n.payload().to_owned());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return crate::describe(&e),
                None => return "the database closed the connection".to_owned(),
            }
        }
    });
    let outcome = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| crate::describe(&e))?;
        // Listening (again): what was committed meanwhile is read now.
        match wake.upgrade() {
            Some(w) => w.notify.notify_one(),
            None => return Ok(()),
        }
        let mut check = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                payload = rx.recv() => match payload {
                    Some(p) if p == own => {}
                    Some(_) => match wake.upgrade() {
                        Some(w) => w.notify.notify_one(),
                        None => return Ok(()),
                    },
                    None => return Err(String::new()),
                },
                _ = check.tick() => {
                    if wake.strong_count() == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    drop(client);
    match outcome {
        Ok(()) => {
            driver.abort();
            Ok(())
        }
        // The driver ended first: its reason.
        Err(e) if e.is_empty() => Err(driver
            .await
            .unwrap_or_else(|_| "the listening task failed".to_owned())),
        Err(e) => {
            driver.abort();
            Err(e)
        }
    }
}
