//! SIGINT and SIGTERM during a comparison: caught, not fatal, so that the comparison ends
//! between runs with every server stopped, the loadgen killed and the cgroup removed, and
//! writes what finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once SIGINT or SIGTERM came; the comparison stops at its next step.
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Catches SIGINT and SIGTERM from now on (instead of dying by them, which would leave a
    /// server running and a cgroup behind).
    pub fn catch() -> crate::Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag))
                .map_err(|e| format!("cannot handle signals: {e}"))?;
        }
        Ok(Interrupt(flag))
    }

    /// [`crate::Error::Interrupted`] once a signal came.
    pub fn check(&self) -> crate::Result<()> {
        if self.0.load(Ordering::Relaxed) {
            Err(crate::Error::Interrupted)
        } else {
            Ok(())
        }
    }
}
