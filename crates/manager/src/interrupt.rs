//! Interrupting a call: the signals that cancel a start (Ctrl-C, SIGTERM,
//! a hang-up), received through procutil's self-pipe, and the checks the
//! start makes so that an interrupted start leaves nothing half done.

use std::sync::Arc;

use procutil::signals::Signals;

use crate::{Error, Manager};

/// The signals that end an interactive command.
pub const INTERRUPTS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Catches [`INTERRUPTS`] until the returned value is dropped (then the
/// previous dispositions are back), for [`Manager::with_interrupts`].
pub fn catch_interrupts() -> Result<Arc<Signals>, Error> {
    Ok(Arc::new(Signals::install(&INTERRUPTS)?))
}

impl Manager {
    /// Cancels a start when one of `signals` arrives: the server being
    /// started is stopped with its group, its record says stopped, and the
    /// call returns [`Error::Interrupted`]. Without this, a start runs to
    /// its end whatever arrives (the process's own handlers decide).
    pub fn with_interrupts(mut self, signals: Arc<Signals>) -> Self {
        self.interrupts = Some(signals);
        self
    }

    /// True once an interrupt arrived.
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupts.as_ref().is_some_and(|s| s.is_set())
    }

    /// `Err(Error::Interrupted)` once an interrupt arrived.
    pub(crate) fn check_interrupt(&self) -> Result<(), Error> {
        // Read without taking it from the pipe: the caller's own wait for
        // the signal (`ocm supervise`'s main loop) must still see it.
        match self.interrupts.as_ref().and_then(|s| s.arrived()) {
            Some(signal) => Err(Error::Interrupted { signal }),
            None => Ok(()),
        }
    }

    /// The interrupt signals, to wait on with other sources.
    pub(crate) fn interrupt_source(&self) -> Option<&Signals> {
        self.interrupts.as_deref()
    }
}
