//! Open files: the process's limit, raised as far as the system lets, and what is kept of it for
//! other than WebSockets.

/// Descriptors kept free of WebSockets: for `/healthz`, `/readyz`, the API, requests still in
/// their handshake, and connections to Redis or NATS.
pub const RESERVE: u64 = 512;

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force.
pub fn raise() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            None
        }
    }
}

/// The soft open-file limit in force.
pub fn limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// The most WebSockets a process with `limit` open files should hold: the limit less
/// [`RESERVE`], or half of a small limit.
pub fn socket_budget(limit: u64) -> usize {
    let budget = if limit > 2 * RESERVE {
        limit - RESERVE
    } else {
        limit / 2
    };
    usize::try_from(budget).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_a_reserve_for_the_api() {
        assert_eq!(socket_budget(20_000), 19_488);
        assert_eq!(socket_budget(1024), 512);
        assert_eq!(socket_budget(256), 128);
    }
}
