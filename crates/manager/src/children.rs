//! Servers this process spawned: kept so they are reaped (no zombie), and
//! ended with their exit status when a start attempt fails.

use std::time::Duration;

use procutil::{ExitStatus, ProcessIdentity, Termination};

use crate::Manager;

impl Manager {
    /// Keeps a server this process spawned, so that it is reaped.
    pub(crate) fn adopt_child(&self, child: procutil::Child) {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
    }

    /// Reaps servers this manager spawned that have exited since, so none
    /// stays a zombie. Every call of the manager does this first; a program
    /// that keeps a `Manager` but calls it rarely may call this from time to
    /// time. Servers still running when the `Manager` is dropped are children
    /// of this process and, if they exit while it still runs, wait for it to
    /// reap them (or to exit); drop the `Manager` only when that is fine.
    pub fn reap(&self) {
        self.reap_children();
    }

    pub(crate) fn reap_children(&self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_)) | Err(_)));
    }

    /// Ends a failed start attempt: reaps the child if it exited, else
    /// terminates its group. Returns its exit status when it could be read,
    /// and how ocm stopped it when it had to.
    pub(crate) fn end_attempt(
        &self,
        pid: u32,
        identity: &ProcessIdentity,
    ) -> (Option<ExitStatus>, Option<Termination>) {
        let grace = self.config.stop_grace.min(Duration::from_secs(2));
        let child = {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            children
                .iter()
                .position(|c| c.pid() == pid)
                .map(|index| children.swap_remove(index))
        };
        let Some(child) = child else {
            return (None, procutil::terminate(identity, grace).ok());
        };
        if let Ok(Some(status)) = child.try_wait() {
            return (Some(status), None);
        }
        match child.terminate(grace) {
            Ok(Termination::AlreadyGone) => (
                child.wait_timeout(Duration::from_secs(1)).ok().flatten(),
                None,
            ),
            Ok(how) => (None, Some(how)),
            Err(_) => (None, None),
        }
    }
}
