//! Who this daemon is: `host:pid` for people (`service_health_status.checked_by`, manual job
//! runs), and `host:pid:nonce` per start for the machines (heartbeat id, lease holder), so a
//! restarted process never mistakes an old heartbeat or lease for its own.

pub use crate::config::hostname;

/// `host:pid`, written to `service_health_status.checked_by` and used in lease holders.
pub fn identity() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// `host:pid:nonce`, unique per start: the daemon's heartbeat id, and each job scheduler's lease
/// holder.
pub fn instance_id() -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{}:{}", identity(), &nonce[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_extend_the_identity_and_differ_per_start() {
        let (a, b) = (instance_id(), instance_id());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}:", identity())), "{a}");
        assert_eq!(a.len(), identity().len() + 9);
    }
}
