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
    // A directory we create is root's alone; an existing one (`/run`, `/tmp`, ...) is left as
    // it is: the socket's own mode and the peer-uid check already keep others out.
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
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

    /// Connects to `path` from a forked child running as `uid` (root forks, then drops to
    /// it), sends a Status request and returns the reply line, or the errno of `connect`.
    /// The child makes only raw system calls: the test process has other threads.
    fn as_user(uid: u32, path: &Path) -> Result<String, i32> {
        use std::os::unix::ffi::OsStrExt;
        // Everything the child needs is allocated before the fork.
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        let mut req = serde_json::to_vec(&Request::Status).unwrap();
        req.push(b'\n');
        let mut fds = [0i32; 2];
        // SAFETY: fds has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child below calls only async-signal-safe functions and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: raw system calls on descriptors and buffers owned by this child.
            unsafe {
                libc::close(fds[0]);
                if libc::setgid(uid) != 0 || libc::setuid(uid) != 0 {
                    libc::_exit(100);
                }
                let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(s, (&raw const addr).cast(), len) != 0 {
                    libc::_exit((*libc::__errno_location()).clamp(1, 99));
                }
                libc::write(s, req.as_ptr().cast(), req.len());
                let mut buf = [0u8; 512];
                loop {
                    let n = libc::read(s, buf.as_mut_ptr().cast(), buf.len());
                    if n <= 0 {
                        break;
                    }
                    libc::write(fds[1], buf.as_ptr().cast(), n as usize);
                }
                libc::_exit(0);
            }
        }
        // SAFETY: our copy of the write end; the child has its own.
        unsafe { libc::close(fds[1]) };
        use std::io::Read;
        // SAFETY: the read end is ours alone from here on.
        let mut rd = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
        let mut out = String::new();
        rd.read_to_string(&mut out).unwrap();
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died: {status}");
        match libc::WEXITSTATUS(status) {
            0 => Ok(out),
            100 => panic!("the child could not drop to uid {uid}"),
            e => Err(e),
        }
    }

    /// Only root can open the socket: its mode keeps other users from connecting at all,
    /// and were it opened up, the peer-credential check still refuses them.
    #[tokio::test]
    async fn other_users_are_refused() {
        if unsafe_uid() != 0 {
            eprintln!("skipped: needs root to act as another user");
            return;
        }
        // A world-traversable directory, so only the socket's own mode stands in the way.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("admin.sock");
        let l = bind(&path).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
            0o755,
            "an existing directory keeps its mode"
        );
        let stop = CancellationToken::new();
        let srv = tokio::spawn(serve(l, Arc::new(Echo), stop.clone()));
        let nobody = 65534;

        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || as_user(nobody, &p))
            .await
            .unwrap();
        assert_eq!(r, Err(libc::EACCES), "mode 0600 refuses uid {nobody}");

        // Root still gets its answer the same way.
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || as_user(0, &p))
            .await
            .unwrap();
        assert!(r.as_ref().is_ok_and(|s| s.contains("\"n1\"")), "{r:?}");

        // Opened up by mistake: the uid check answers for it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || as_user(nobody, &p))
            .await
            .unwrap();
        let r = r.unwrap();
        assert!(
            r.contains("permission denied: uid 65534 is not root"),
            "{r}"
        );
        stop.cancel();
        srv.await.unwrap();
    }

    fn unsafe_uid() -> u32 {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }
}
