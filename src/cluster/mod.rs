//! Several daemons on one database, with PostgreSQL as the only coordinator. Each daemon keeps
//! a heartbeat row; the live ones split the services by rendezvous (highest-random-weight)
//! hashing of service_type over their ids, so every daemon computes the same owner for every
//! service from the same member list, and a member joining or leaving moves only its own share
//! (the hashing itself is pure, in `plan::placement`). This module also owns the daemon's
//! identity: a stable node name (`cluster.node_name`), claimed so that only one live daemon
//! bears it, and fencing: a daemon that cannot confirm its heartbeat within the ttl stops
//! checking once the others may have taken its services over.
//!
//! May import: `config`, `clock`, `text`, `plan`, `observe`, `store` (the deadline of a call).

mod claim;
mod identity;

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::{Renewal, sleep_until};
pub use crate::plan::placement::{owner, owns};
use crate::store::db;
pub use claim::{ClaimError, NameClaim};
pub use identity::{hostname, identity, instance_id};

/// What one heartbeat learnt; the membership loop publishes the latest (an empty one while
/// fenced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beat {
    /// The live members, sorted, this daemon included.
    pub live: Vec<String>,
    /// Whether this daemon's row was live before this beat: a restart within the ttl, or
    /// simply the next beat. `false` at a first start, and after being cut off for the ttl.
    pub was_member: bool,
}

/// This daemon in the cluster: its node name, the process writing for it, and how long a
/// heartbeat lasts.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub instance: String,
    pub host: String,
    pub ttl: Duration,
}

/// Writes our heartbeat, deletes expired ones, and returns the live members. One statement.
pub async fn beat(pool: &PgPool, me: &Member) -> sqlx::Result<Beat> {
    let (live, was_member): (Vec<String>, bool) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM daemon_heartbeats WHERE expires_at <= now() AND daemon_id <> $1
         ), before AS (
             SELECT EXISTS (SELECT 1 FROM daemon_heartbeats WHERE daemon_id = $1 AND expires_at > now()) AS live
         ), mine AS (
             INSERT INTO daemon_heartbeats (daemon_id, host, instance, expires_at)
             VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
             ON CONFLICT (daemon_id) DO UPDATE
                SET host = EXCLUDED.host, instance = EXCLUDED.instance, last_seen = now(),
                    expires_at = EXCLUDED.expires_at,
                    started_at = CASE WHEN daemon_heartbeats.instance IS DISTINCT FROM EXCLUDED.instance
                                      THEN now() ELSE daemon_heartbeats.started_at END
             RETURNING daemon_id
         )
         SELECT ARRAY(SELECT daemon_id FROM daemon_heartbeats WHERE expires_at > now() AND daemon_id <> $1
                      UNION SELECT daemon_id FROM mine ORDER BY 1),
                (SELECT live FROM before)",
    )
    .bind(&me.name)
    .bind(&me.host)
    .bind(&me.instance)
    .bind(me.ttl.as_millis() as f64)
    .fetch_one(pool)
    .await?;
    Ok(Beat { live, was_member })
}

/// Removes our heartbeat, so the others take our services over at their next beat.
pub async fn leave(pool: &PgPool, me: &Member) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM daemon_heartbeats WHERE daemon_id = $1 AND instance = $2")
        .bind(&me.name)
        .bind(&me.instance)
        .execute(pool)
        .await
        .map(drop)
}

/// The membership loop's view: what it last published, and until when its last confirmed
/// heartbeat keeps the others off this daemon's services.
struct Fence {
    valid_until: Option<Instant>,
    fenced: bool,
}

/// Beats every third of the ttl and publishes the member list whenever it changes. A failed
/// beat keeps the last list in force until the last confirmed heartbeat expires; from then on
/// (if other daemons were live, who will take our services over) it publishes an empty list:
/// fenced, this daemon checks nothing until a beat succeeds again. Each beat also confirms the
/// node-name claim. Deletes the heartbeat on `stop`.
pub async fn keep_membership(
    pool: PgPool,
    me: Member,
    mut claim: NameClaim,
    limit: Duration,
    first: Option<Instant>,
    members: watch::Sender<Beat>,
    stop: CancellationToken,
) {
    let mut renewal = Renewal::every_third_of(me.ttl);
    let mut fence = Fence {
        valid_until: first.map(|sent| sent + me.ttl),
        fenced: first.is_none(),
    };
    loop {
        let expiry = fence.valid_until.filter(|_| !fence.fenced);
        tokio::select! {
            due = renewal.due(&stop) => if !due { break },
            () = sleep_until(expiry) => {
                fence_off(&mut fence, &members);
                continue;
            }
        }
        let sent = Instant::now();
        let attempt = async {
            claim.confirm().await.map_err(|e| e.to_string())?;
            db::deadline(limit, beat(&pool, &me))
                .await
                .map_err(|e| e.to_string())
        };
        // The fence falls at its time even while a beat hangs (up to the statement deadline).
        tokio::pin!(attempt);
        let outcome = loop {
            let expiry = fence.valid_until.filter(|_| !fence.fenced);
            tokio::select! {
                outcome = &mut attempt => break Some(outcome),
                () = stop.cancelled() => break None,
                () = sleep_until(expiry) => fence_off(&mut fence, &members),
            }
        };
        let Some(outcome) = outcome else { break };
        match outcome {
            Ok(beat) => {
                renewal.succeeded();
                fence.valid_until = Some(sent + me.ttl);
                publish(&mut fence, &members, beat);
            }
            Err(e) => {
                if renewal.failed() {
                    tracing::warn!(event = "heartbeat_failed", error = %e, "cannot write the heartbeat; keeping the last membership until it expires");
                }
            }
        }
    }
    if let Err(e) = db::deadline(limit, leave(&pool, &me)).await {
        tracing::warn!(event = "heartbeat_not_removed", error = %e, "others take over when it expires");
    }
    claim.release().await;
}

/// Our heartbeat has expired unconfirmed: if others were live, they take our services over now,
/// so we stop checking them. Alone, there is no one to take over: we go on.
fn fence_off(fence: &mut Fence, members: &watch::Sender<Beat>) {
    fence.valid_until = None;
    let others = members.borrow().live.len() > 1;
    if others {
        fence.fenced = true;
        tracing::error!(
            event = "fenced",
            "heartbeat not confirmed within the ttl: the other daemons take this one's services over; checking nothing until the database answers"
        );
        members.send_replace(Beat::default());
    }
}

fn publish(fence: &mut Fence, members: &watch::Sender<Beat>, beat: Beat) {
    if std::mem::take(&mut fence.fenced) {
        tracing::info!(
            event = "fence_lifted",
            members = beat.live.len(),
            "heartbeat confirmed again; taking a share of the services back"
        );
    }
    members.send_if_modified(|current| {
        let changed = current.live != beat.live;
        if changed {
            tracing::info!(event = "membership_changed", members = beat.live.len(), daemons = %beat.live.join(" "));
            *current = beat;
        }
        changed
    });
}
