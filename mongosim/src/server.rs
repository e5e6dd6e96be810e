//! TCP serving: the accept loop and one task per connection (optional TLS handshake, then read a
//! request, run it, write the reply). Connection tasks stop on the drop-connections and shutdown
//! signals; requests wait while the simulator is paused (except `mongosimResume`), and replies
//! are held back until it resumes.

use crate::commands::{self, ConnState, Outcome};
use crate::control::names;
use crate::state::Shared;
use crate::wire;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

/// Resolves once shutdown was requested (even if it was requested before subscribing).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
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
                    let tls = tls.clone();
                    tokio::spawn(
                        async move {
                            let served = match tls {
                                Some(acceptor) => match acceptor.accept(stream).await {
                                    Ok(stream) => {
                                        let (r, w) = tokio::io::split(stream);
                                        serve(r, w, Arc::clone(&shared), id).await
                                    }
                                    Err(err) => Err(err),
                                },
                                None => {
                                    // Owned halves of a plain socket need no lock between them.
                                    let (r, w) = stream.into_split();
                                    serve(r, w, Arc::clone(&shared), id).await
                                }
                            };
                            match served {
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

async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut W,
    request_id: i32,
    legacy: bool,
    body: &[u8],
) -> std::io::Result<()> {
    writer
        .write_all(&wire::reply_header(request_id, legacy, body.len()))
        .await?;
    writer.write_all(body).await?;
    writer.flush().await
}

async fn serve<R, W>(r: R, w: W, shared: Arc<Shared>, id: i64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut drop_rx = shared.drop_gen.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return Ok(());
    }
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let mut writer = BufWriter::with_capacity(64 * 1024, w);
    let mut scratch = Vec::new();
    let mut conn = ConnState {
        id,
        ..ConnState::default()
    };
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
                write_reply(&mut writer, request.request_id, request.legacy, &body).await?;
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
                write_reply(&mut writer, request.request_id, request.legacy, &body).await?;
            }
        }
    }
}
