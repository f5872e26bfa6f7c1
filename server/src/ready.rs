//! How a worker thread reports that it is serving (or why it cannot) to the thread that
//! started it: a module of its own, below both `server` and the backends, so neither imports
//! the other for it.

use std::io;

/// How a worker thread tells [`crate::start`] that it is serving, or why it cannot.
pub(crate) struct Ready(pub(crate) std::sync::mpsc::Sender<io::Result<()>>);

impl Ready {
    /// Passes `res` through, reporting an error to `start` (which then fails).
    pub fn report<T>(&self, res: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &res {
            let _ = self.0.send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        res
    }

    /// The worker is set up and about to accept.
    pub fn done(&self) {
        let _ = self.0.send(Ok(()));
    }
}
