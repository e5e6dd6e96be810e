//! TCP serving: the accept loop and one task per connection (read a request, run it, write the
//! reply). Connection tasks stop on the drop-connections and shutdown signals; requests wait while
//! the simulator is paused (except `mongosimResume`), and replies are held back until it resumes.

use crate::commands::{self, ConnState, Outcome};
use crate::control::names;
use crate::state::Shared;
use crate::wire;
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn, Instrument};

/// Resolves once shutdown was requested (even if it was requested before subscribing).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let id = shared.next_connection_id();
                    debug!(connection = id, %peer, "connection accepted");
                    let span = tracing::debug_span!("connection", id);
                    tokio::spawn(
                        async move {
                            match serve(stream, Arc::clone(&shared), id).await {
                                Ok(()) => debug!("connection closed"),
                                Err(err) => debug!(error = %err, "connection ended with an error"),
                            }
                        }
                        .instrument(span),
                    );
                }
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut shutdown) => break,
        }
    }
    info!("listener stopped");
}

async fn serve(stream: TcpStream, shared: Arc<Shared>, id: i64) -> std::io::Result<()> {
    let mut drop_rx = shared.drop_gen.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return Ok(());
    }
    let (r, w) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let mut writer = BufWriter::with_capacity(64 * 1024, w);
    let mut scratch = Vec::new();
    let mut conn = ConnState { id, app_name: None };
    loop {
        let request = tokio::select! {
            r = wire::read_request(&mut reader, &mut scratch) => r?,
            _ = drop_rx.changed() => return Ok(()),
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        let Some(request) = request else {
            return Ok(());
        };
        let name = request.body.keys().next().cloned().unwrap_or_default();
        // Handshakes and monitor checks are answered while paused, so a paused simulator looks like
        // a slow server rather than a vanished one, and a new connection can still send resume.
        let bypass = matches!(
            name.as_str(),
            names::PAUSE | names::RESUME | "hello" | "isMaster" | "ismaster"
        );
        if name == names::DROP_CONNECTIONS {
            // Answer the caller first, then close like every other connection.
            if let Outcome::Reply(body) = commands::execute(&shared, &mut conn, request.body).await
            {
                writer
                    .write_all(&wire::encode_reply_for(
                        request.request_id,
                        request.legacy,
                        &body,
                    ))
                    .await?;
                writer.flush().await?;
            }
            return Ok(());
        }
        let outcome = tokio::select! {
            o = async {
                if !bypass {
                    shared.wait_unpaused().await;
                }
                let o = commands::execute(&shared, &mut conn, request.body).await;
                if !bypass {
                    shared.wait_unpaused().await;
                }
                o
            } => o,
            _ = drop_rx.changed() => return Ok(()),
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        match outcome {
            Outcome::Close => return Ok(()),
            Outcome::Reply(body) => {
                if request.no_reply {
                    continue;
                }
                let bytes = wire::encode_reply_for(request.request_id, request.legacy, &body);
                writer.write_all(&bytes).await?;
                writer.flush().await?;
            }
        }
    }
}
