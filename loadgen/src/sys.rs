//! The loadgen's system calls that the standard library and tokio do not wrap: a timerfd
//! with nanosecond deadlines for the pacer, the count of unread bytes on a socket, the
//! bind-without-port socket option, the thread's timer slack, and CPU time. Every `unsafe`
//! of the loadgen is here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A CLOCK_MONOTONIC timerfd, armed with absolute deadlines: the kernel's hrtimer fires with
/// no timer slack, where tokio's own timer rounds to whole milliseconds.
#[derive(Debug)]
pub struct TimerFd(OwnedFd);

impl TimerFd {
    /// A non-blocking timerfd, disarmed.
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Arms the timer to fire at `at` (at once if `at` has passed).
    pub fn arm_at(&self, at: Instant) -> io::Result<()> {
        let left = at.saturating_duration_since(Instant::now());
        let now = monotonic_now()?;
        let target = now + left.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: target.as_secs() as libc::time_t,
                tv_nsec: target.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call; the old value is not asked for.
        let rc = unsafe {
            libc::timerfd_settime(
                self.0.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the expiry count, clearing the readiness; WouldBlock if it has not fired.
    pub fn clear(&self) -> io::Result<u64> {
        let mut n = 0u64;
        // SAFETY: reads at most 8 bytes into `n`, which is 8 bytes long.
        let rc = unsafe { libc::read(self.0.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n)
    }
}

impl TimerFd {
    /// A new timerfd registered with the current tokio runtime for readability.
    pub fn registered() -> io::Result<tokio::io::unix::AsyncFd<TimerFd>> {
        let t = TimerFd::new()?;
        // SAFETY: a TimerFd owns its descriptor (an OwnedFd closed only when it drops) and
        // `as_raw_fd` always returns that same descriptor, for the AsyncFd's whole life.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(t, tokio::io::Interest::READABLE)
        }
        .map_err(|e| io::Error::other(e.to_string()))
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// CLOCK_MONOTONIC now, the clock `Instant` reads on Linux.
fn monotonic_now() -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Sends SIGINT to a child process of ours (one not yet waited for, so its pid is still ours).
pub fn interrupt(child: &std::process::Child) {
    // SAFETY: kill(2) takes plain integers; the child is unreaped, so the pid names it.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// Bytes received on a socket and not yet read (SIOCINQ). Closing a socket that has some
/// sends an RST instead of a FIN, so the loadgen asks before it counts a close.
pub fn unread_bytes(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD (= SIOCINQ for TCP) writes one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// IP_BIND_ADDRESS_NO_PORT: bind a source address now, pick the port at connect time.
pub fn set_bind_address_no_port(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a pointer that is valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the calling thread's timer slack to 1 ns (the default is 50 µs), so the waits its
/// runtime makes end when asked, not up to 50 µs later.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// User and system CPU seconds, of this process or of the calling thread.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CpuTime {
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
}

impl CpuTime {
    /// `self - o`, never negative.
    pub fn saturating_sub(self, o: CpuTime) -> CpuTime {
        CpuTime {
            user: (self.user - o.user).max(0.0),
            sys: (self.sys - o.sys).max(0.0),
        }
    }

    /// User plus system seconds.
    pub fn total(self) -> f64 {
        self.user + self.sys
    }
}

/// This process's CPU time so far.
pub fn process_cpu() -> CpuTime {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> CpuTime {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills the struct we pass and
    // touches nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    CpuTime {
        user: secs(ru.ru_utime),
        sys: secs(ru.ru_stime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timerfd_fires_at_its_deadline() {
        let t = TimerFd::new().unwrap();
        let at = Instant::now() + Duration::from_millis(5);
        t.arm_at(at).unwrap();
        assert_eq!(
            t.clear().unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "fired early"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(t.clear().unwrap(), 1);
    }

    #[test]
    fn unread_bytes_counts_what_waits() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        b.write_all(b"12345").unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while unread_bytes(a.as_raw_fd()).unwrap() < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(unread_bytes(a.as_raw_fd()).unwrap(), 5);
    }
}
