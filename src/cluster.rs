//! Several daemons on one database, with PostgreSQL as the only coordinator. Each daemon keeps
//! a heartbeat row; the live ones split the services by rendezvous (highest-random-weight)
//! hashing of service_type over their ids, so every daemon computes the same owner for every
//! service from the same member list, and a member joining or leaving moves only its own share.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A 64-bit hash with good mixing (FNV-1a, then the splitmix64 finaliser): ids that differ in
/// one character must still rank services independently.
fn weight(member: &str, service: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member.bytes().chain([0u8]).chain(service.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The member that owns `service`: the highest weight, ties broken by id. `None` if no members.
pub fn owner<'a>(members: &'a [String], service: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (weight(m, service), m.as_str()))
        .map(String::as_str)
}

/// Whether `me` owns `service` among `members`. A daemon that sees no members (its own
/// heartbeat not yet written, or the database away) owns everything rather than nothing.
pub fn owns(me: &str, members: &[String], service: &str) -> bool {
    members.is_empty() || owner(members, service) == Some(me)
}

/// Writes our heartbeat and returns the live members, sorted.
pub async fn beat(pool: &PgPool, me: &str, host: &str, ttl: Duration) -> sqlx::Result<Vec<String>> {
    sqlx::query(
        "INSERT INTO daemon_heartbeats (daemon_id, host, expires_at)
         VALUES ($1, $2, now() + $3 * interval '1 millisecond')
         ON CONFLICT (daemon_id) DO UPDATE SET last_seen = now(), expires_at = EXCLUDED.expires_at",
    )
    .bind(me)
    .bind(host)
    .bind(ttl.as_millis() as f64)
    .execute(pool)
    .await?;
    sqlx::query_scalar(
        "SELECT daemon_id FROM daemon_heartbeats WHERE expires_at > now() ORDER BY daemon_id",
    )
    .fetch_all(pool)
    .await
}

/// Removes our heartbeat, so the others take our services over at their next beat.
pub async fn leave(pool: &PgPool, me: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM daemon_heartbeats WHERE daemon_id = $1")
        .bind(me)
        .execute(pool)
        .await
        .map(drop)
}

/// Beats every third of `ttl` and publishes the member list whenever it changes. On a failed
/// beat the last list stays in force: a database outage must not make a daemon drop its share.
/// Deletes the heartbeat on `stop`.
pub async fn keep_membership(
    pool: PgPool,
    me: String,
    host: String,
    ttl: Duration,
    members: watch::Sender<Vec<String>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match beat(&pool, &me, &host, ttl).await {
            Ok(live) => {
                failing = false;
                members.send_if_modified(|current| {
                    let changed = *current != live;
                    if changed {
                        tracing::info!(event = "membership_changed", members = live.len(), daemons = %live.join(" "));
                        *current = live;
                    }
                    changed
                });
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(event = "heartbeat_failed", error = %e, "cannot write the heartbeat; keeping the last membership");
                }
                failing = true;
                continue;
            }
        }
    }
    if let Err(e) = leave(&pool, &me).await {
        tracing::warn!(event = "heartbeat_not_removed", error = %e, "others take over when it expires");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("host-{i}:1000{i}:abcdef0{i}"))
            .collect()
    }

    #[test]
    fn services_spread_evenly_over_members() {
        let m = members(3);
        let mut counts = [0usize; 3];
        for i in 0..9_000 {
            let o = owner(&m, &format!("svc-{i}")).unwrap();
            counts[m.iter().position(|x| x == o).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (2_700..=3_300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_leaving_member_moves_only_its_own_services_and_a_joining_one_takes_a_share() {
        let three = members(3);
        let two: Vec<String> = three[..2].to_vec();
        let mut moved_from_survivors = 0;
        let mut taken_by_newcomer = 0;
        for i in 0..3_000 {
            let s = format!("svc-{i}");
            let before = owner(&three, &s).unwrap();
            let after = owner(&two, &s).unwrap();
            if before != three[2] && before != after {
                moved_from_survivors += 1;
            }
            if before == three[2] {
                taken_by_newcomer += 1;
            }
        }
        assert_eq!(moved_from_survivors, 0, "survivors keep their services");
        assert!(
            (800..=1_200).contains(&taken_by_newcomer),
            "{taken_by_newcomer}"
        );
    }

    #[test]
    fn every_service_has_exactly_one_owner_and_no_members_means_own_everything() {
        let m = members(4);
        for i in 0..500 {
            let s = format!("svc-{i}");
            assert_eq!(m.iter().filter(|me| owns(me, &m, &s)).count(), 1);
        }
        assert!(owns("anyone", &[], "svc"));
    }
}
