//! The admin API server: a Unix stream socket that only root can open (mode 0600 in a 0700
//! directory, and the peer's credentials are checked too, so a socket inherited through a
//! permissive directory still refuses others). Protocol in `rackd_api`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rackd_api::{Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Answers admin requests; implemented by the daemon.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn handle(&self, req: Request) -> impl std::future::Future<Output = Reply> + Send;
}

/// Admin socket errors.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot prepare admin socket directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind admin socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Bind the socket (replacing a stale one) with root-only permissions.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|source| AdminError::Dir {
                path: dir.to_owned(),
                source,
            })?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(AdminError::Bind {
                path: path.to_owned(),
                source,
            });
        }
    }
    let l = UnixListener::bind(path).map_err(|source| AdminError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        AdminError::Bind {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(l)
}

/// Serve until cancelled. Each connection gets its own task.
pub async fn serve<H: Handler>(listener: UnixListener, handler: Arc<H>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let h = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = one(stream, h).await {
                debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn one<H: Handler>(stream: UnixStream, handler: Arc<H>) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (rd, mut wr) = stream.into_split();
    let reply = if uid != 0 {
        Reply::Error(format!("permission denied: uid {uid} is not root"))
    } else {
        let mut line = Vec::new();
        let mut rd = BufReader::new(rd).take(64 * 1024);
        rd.read_until(b'\n', &mut line).await?;
        match serde_json::from_slice::<Request>(&line) {
            Ok(req) => handler.handle(req).await,
            Err(e) => Reply::Error(format!("bad request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    wr.write_all(&out).await?;
    wr.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        async fn handle(&self, req: Request) -> Reply {
            match req {
                Request::Status => Reply::Status(rackd_api::Status {
                    node: "n1".into(),
                    ..Default::default()
                }),
                _ => Reply::Error("unsupported".into()),
            }
        }
    }

    #[tokio::test]
    async fn answers_root_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/admin.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stop = CancellationToken::new();
        let srv = tokio::spawn(serve(l, Arc::new(Echo), stop.clone()));

        let p = path.clone();
        let reply = tokio::task::spawn_blocking(move || {
            let s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            rackd_api::write_message(&s, &Request::Status).unwrap();
            rackd_api::read_message::<Reply, _>(std::io::BufReader::new(&s)).unwrap()
        })
        .await
        .unwrap();
        // Tests run as root here; a non-root peer gets a permission error instead.
        if unsafe_uid() == 0 {
            assert!(matches!(reply, Reply::Status(s) if s.node == "n1"));
        }

        let p = path.clone();
        let reply = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            s.write_all(b"{not json\n").unwrap();
            rackd_api::read_message::<Reply, _>(std::io::BufReader::new(&s)).unwrap()
        })
        .await
        .unwrap();
        assert!(
            matches!(reply, Reply::Error(e) if e.contains("bad request") || e.contains("permission"))
        );
        stop.cancel();
        srv.await.unwrap();
    }

    fn unsafe_uid() -> u32 {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
}
