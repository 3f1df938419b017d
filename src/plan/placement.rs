//! Where each service falls: its phase within the probe interval (so thousands of services
//! spread evenly instead of firing together), its slots, and which daemon owns it among the
//! live ones (rendezvous, i.e. highest-random-weight, hashing). All pure, and all derived from
//! FNV-1a hashes, so every start and every host computes the same answers.

use std::time::Duration;

/// FNV-1a over `bytes`: stable across runs, platforms and Rust versions (unlike `std`'s hasher).
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Checks start on a grid of this step. The services whose slots fall in one step start
/// together: the daemon wakes once for them, and their sockets' events come back in batches,
/// instead of a wake-up and a context switch for each check (issue 16). A step is far below
/// any interval worth having, so the fleet stays spread over the interval.
pub const GRAIN: Duration = Duration::from_millis(10);

/// The service's offset within the interval: FNV-1a of its name, so it is the same on every
/// start and on every host; a multiple of [`GRAIN`] when the interval holds one.
pub fn phase(service_type: &str, interval: Duration) -> Duration {
    let hash = u128::from(fnv1a(service_type.bytes()));
    let nanos = interval.as_nanos().max(1);
    let grain = GRAIN.as_nanos();
    let offset = match nanos / grain {
        0 => hash % nanos,
        steps => (hash % steps) * grain,
    };
    Duration::from_nanos(u64::try_from(offset).unwrap_or(0))
}

/// The first slot `phase + k * interval` (k ≥ 0) at or after `elapsed`.
pub fn next_slot(elapsed: Duration, phase: Duration, interval: Duration) -> Duration {
    if elapsed <= phase {
        return phase;
    }
    let interval_ns = interval.as_nanos().max(1);
    let k = (elapsed - phase).as_nanos().div_ceil(interval_ns);
    phase + Duration::from_nanos(u64::try_from(k * interval_ns).unwrap_or(u64::MAX))
}

/// The first round after a scheduler starts is compressed into this share of the interval, so
/// every service has been checked once well within one interval of start, start-up included
/// (its second check then comes at most 1.4 intervals after its first; from there on, exactly
/// one per interval).
const FIRST_ROUND: f64 = 0.6;

/// A service's first slot while the scheduler is still in its first round (`elapsed` since it
/// started): its compressed phase, or at once if that has passed already (services with the
/// smallest phases, added while the scheduler was being set up). `None` after the first round.
pub fn first_slot(elapsed: Duration, phase: Duration, interval: Duration) -> Option<Duration> {
    (elapsed < interval.mul_f64(FIRST_ROUND)).then(|| phase.mul_f64(FIRST_ROUND).max(elapsed))
}

/// The slot a service's latest check counted for, on the grid of `interval` (the interval the
/// scheduler ran that check with, which a reload may have changed since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSlot {
    pub slot: Duration,
    pub interval: Duration,
}

/// A service's next check, `elapsed` since the scheduler's epoch: when it is due, and the slot
/// it counts for (they differ only in the compressed first round). Without a last check, the
/// first round's slot or the next one on the grid; after one, the first slot of the grid at
/// least the shorter of the old and new intervals after it, and not before now. So a service
/// never runs twice in one slot, a tick missed while a check ran long is skipped rather than
/// made up in a burst, and a scheduler that takes over from another (a reload) with the same
/// epoch keeps every service on its grid: no check repeated, none moved early.
pub fn next_check(
    elapsed: Duration,
    last: Option<LastSlot>,
    phase: Duration,
    interval: Duration,
) -> (Duration, Duration) {
    match (last, first_slot(elapsed, phase, interval)) {
        // Counts as this phase's slot: the next check is a whole interval after it.
        (None, Some(first)) => (first, phase),
        (None, None) => {
            let slot = next_slot(elapsed, phase, interval);
            (slot, slot)
        }
        (Some(last), _) => {
            let earliest = elapsed.max(last.slot + interval.min(last.interval));
            let slot = next_slot(earliest, phase, interval);
            (slot, slot)
        }
    }
}

/// A member's weight for a service: FNV-1a, then the splitmix64 finaliser, so ids that differ
/// in one character still rank services independently.
fn weight(member: &str, service: &str) -> u64 {
    let mut h = fnv1a(member.bytes().chain([0u8]).chain(service.bytes()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn phases_are_stable_and_spread() {
        let interval = Duration::from_secs(30);
        assert_eq!(phase("github", interval), phase("github", interval));
        assert!(phase("github", interval) < interval);
        assert_eq!(phase("github", interval).as_nanos() % GRAIN.as_nanos(), 0);
        let tiny = Duration::from_millis(3);
        assert!(
            phase("github", tiny) < tiny,
            "an interval below the grain still spreads"
        );
        // 10,000 services over 30 one-second buckets: each bucket near 333.
        let mut buckets = [0u32; 30];
        for i in 0..10_000 {
            buckets[phase(&format!("svc-{i}"), interval).as_secs() as usize] += 1;
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*min > 250 && *max < 420, "uneven spread: {min}..{max}");
    }

    #[test]
    fn the_first_round_finishes_within_most_of_one_interval() {
        let s = Duration::from_secs;
        let interval = s(30);
        assert_eq!(first_slot(s(0), s(10), interval), Some(s(6)));
        assert_eq!(
            first_slot(s(7), s(10), interval),
            Some(s(7)),
            "passed already: at once"
        );
        assert_eq!(
            first_slot(s(19), s(10), interval),
            None,
            "after the first round: regular slots"
        );
        // After the compressed first check the regular schedule resumes one interval on.
        assert_eq!(
            next_slot(s(10) + Duration::from_nanos(1), s(10), s(30)),
            s(40)
        );
    }

    #[test]
    fn slots_skip_missed_ticks() {
        let s = Duration::from_secs;
        let cases = [
            (s(0), s(7), s(10), s(7)),
            (s(7), s(7), s(10), s(7)),
            (s(8), s(7), s(10), s(17)),
            (s(43), s(7), s(10), s(47)),
            (s(47), s(7), s(10), s(47)),
        ];
        for (elapsed, phase, interval, want) in cases {
            assert_eq!(
                next_slot(elapsed, phase, interval),
                want,
                "{elapsed:?} {phase:?}"
            );
        }
    }

    #[test]
    fn the_next_check_stays_on_the_grid_after_a_takeover() {
        let s = Duration::from_secs;
        let (phase, interval) = (s(7), s(10));
        let last = |slot, interval| Some(LastSlot { slot, interval });
        let cases = [
            // (elapsed, last check, want (due, counts for))
            (s(0), None, (s(7).mul_f64(0.6), s(7))),
            (s(5), None, (s(5), s(7))),
            (s(20), None, (s(27), s(27))),
            // Taken over right after a check, or with its next one still ahead: its next slot.
            (s(27), last(s(27), interval), (s(37), s(37))),
            (s(33), last(s(27), interval), (s(37), s(37))),
            // In the first round, after the compressed first check: one interval after the phase.
            (s(5), last(s(7), interval), (s(17), s(17))),
            // A check that ran long: the missed slots are skipped.
            (s(58), last(s(27), interval), (s(67), s(67))),
            // The interval halved from 20 s: at least the new interval after the last check.
            (s(28), last(s(27), s(20)), (s(37), s(37))),
        ];
        for (elapsed, last, want) in cases {
            assert_eq!(
                next_check(elapsed, last, phase, interval),
                want,
                "{elapsed:?} {last:?}"
            );
        }
        // The interval doubled from 5 s, and with it the phase moved (3 s now): the first slot
        // of the new grid at least the old interval after the last check, never sooner.
        assert_eq!(
            next_check(s(28), last(s(27), s(5)), s(3), interval),
            (s(33), s(33))
        );
    }

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
