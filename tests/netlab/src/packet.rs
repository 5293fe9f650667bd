//! Raw `AF_PACKET` sockets on one interface of a namespace: every frame in and out, read as
//! it arrives (no capture process, so each frame gets its own arrival time), and frames
//! written as given (ARP and NDP probes).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// An `AF_PACKET` socket bound to one interface, for every protocol (`ETH_P_ALL`). Opened
/// inside the namespace, it stays there whichever thread uses it afterwards.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

const ETH_P_ALL: u16 = 0x0003;

fn sys(call: &'static str, target: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Sys {
        call,
        target,
        source,
    }
}

impl PacketSocket {
    /// Opens the socket in `ns` and binds it to `dev`.
    pub fn open(ns: &Netns, dev: &str) -> Result<Self> {
        let ifindex = ns.ifindex(dev)?;
        let target = format!("{dev} in {}", ns.name());
        let fd = ns.enter(|| {
            // SAFETY: plain socket(2); the result is checked before it is owned.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(ETH_P_ALL.to_be()),
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor nobody else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })?;
        let fd = fd.map_err(sys("socket(AF_PACKET)", target.clone()))?;
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = i32::try_from(ifindex)
            .map_err(|_| sys("bind", target.clone())(io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: bind with sll's own size on our socket.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(sys("bind", target)(io::Error::last_os_error()));
        }
        Ok(Self { fd })
    }

    /// Makes [`PacketSocket::recv`] give up after `timeout` (`WouldBlock`), so a reader
    /// thread notices when to stop.
    pub fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: setsockopt with a correctly sized value on our socket.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sends one whole frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is valid for its length; the socket is bound to the interface.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        match usize::try_from(n) {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(n) => Err(io::Error::other(format!(
                "sent {n} of {} bytes",
                frame.len()
            ))),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Receives one frame, waiting at most the receive timeout.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        self.recv_flags(buf, 0)
    }

    /// One frame if one is queued.
    pub fn recv_nowait<'b>(&self, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        self.recv_flags(buf, libc::MSG_DONTWAIT)
            .ok()
            .filter(|f| !f.is_empty())
    }

    fn recv_flags<'b>(&self, buf: &'b mut [u8], flags: i32) -> io::Result<&'b [u8]> {
        // SAFETY: recv into our buffer, bounded by its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
            )
        };
        match usize::try_from(n) {
            Ok(n) => Ok(buf.get(..n).unwrap_or(buf)),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Waits up to `timeout` for a frame to be readable.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&raw mut pfd, 1, ms) > 0 }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<PacketSocket> for OwnedFd {
    fn from(s: PacketSocket) -> OwnedFd {
        s.fd
    }
}
