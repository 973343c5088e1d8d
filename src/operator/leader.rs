//! Leader election with a `coordination.k8s.io/v1` Lease, so two controller replicas never run
//! experiments twice: one holds the lease and renews it; the others wait for it to expire.
//!
//! Expiry is judged by each replica's own clock, as client-go does: a follower takes the
//! lease only after it has seen the same record, unrenewed, for a whole lease duration — so
//! clocks that disagree between nodes cannot hand the lease to two replicas. A leader that
//! cannot renew in time stops leading before its lease could have expired for the others.
//!
//! Why not `kube-lease-manager` (it supports kube 5 and writes with server-side apply): it
//! judges expiry from the holder's `renewTime` against the follower's wall clock, so clocks
//! that disagree by more than its grace period let two replicas lead at once. Measuring
//! "unchanged for a whole duration" on the local monotonic clock, as here and in client-go,
//! needs no clock agreement at all. Since experiments run in runner pods, two leaders would
//! only duplicate API calls, but the election should still mean what it says.
//!
//! A replica is Ready before it leads (readiness never waits for the Lease), and gives the
//! Lease up when it stops ([`release`]), so a rolling upgrade hands over in seconds.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// How long a lease lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long one API call of the election may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease record as last seen, and when this replica first saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    holder: String,
    renewed: Option<MicroTime>,
    since: Instant,
}

impl Observed {
    /// Notes `spec` as seen at `now`, keeping the earlier time when the record has not changed.
    pub fn update(previous: Option<Observed>, spec: &LeaseSpec, now: Instant) -> Observed {
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec.renew_time.clone();
        match previous {
            Some(seen) if seen.holder == holder && seen.renewed == renewed => seen,
            _ => Observed {
                holder,
                renewed,
                since: now,
            },
        }
    }
}

/// May `identity` take or keep the lease? (Pure.) Yes when nobody holds it, when it holds it
/// already, or when the holder's record has not changed for a whole lease duration by this
/// replica's clock.
pub fn may_hold(spec: &LeaseSpec, identity: &str, observed: &Observed, now: Instant) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    now.duration_since(observed.since) >= duration
}

/// One attempt to take or renew the lease; true when this process holds it afterwards.
pub async fn try_hold(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let seconds = LEASE_DURATION.as_secs() as i32;
    let now = Timestamp::now();
    match api.get_opt(name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.to_owned()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            let seen = Observed::update(observed.take(), spec, Instant::now());
            let allowed = may_hold(spec, identity, &seen, Instant::now());
            *observed = Some(seen);
            if !allowed {
                return Ok(false);
            }
            if spec.holder_identity.as_deref() != Some(identity) {
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.holder_identity = Some(identity.to_owned());
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
            // The resourceVersion from the read makes this a compare-and-swap: if another
            // replica took the lease meanwhile, the write conflicts and we stay a follower.
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

async fn attempt(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, String> {
    match tokio::time::timeout(CALL_TIMEOUT, try_hold(api, name, identity, observed)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// Waits until this process holds the lease, then keeps renewing it in the background; the
/// returned task ends when leadership is lost (the caller must then stop).
pub async fn lead(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let mut observed = None;
    loop {
        match attempt(&api, name, identity, &mut observed).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::info!(lease = name, identity, "leading");
    let (name, identity) = (name.to_owned(), identity.to_owned());
    tokio::spawn(async move {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(LEASE_DURATION / 5).await;
            match attempt(&api, &name, &identity, &mut observed).await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
            }
            // Stop while the others still see our lease as alive, never after.
            if last_renewal.elapsed() + CALL_TIMEOUT >= LEASE_DURATION {
                return;
            }
        }
    })
}

/// Gives the lease up if this replica holds it, so a successor leads at once instead of
/// waiting out the lease (a rolling upgrade hands over in seconds). Best effort: a lease that
/// cannot be released simply expires.
pub async fn release(client: Client, namespace: &str, name: &str, identity: &str) {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let released = async {
        let Some(mut lease) = api.get_opt(name).await? else {
            return Ok::<_, kube::Error>(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        // The resourceVersion from the read keeps this from clearing a successor's hold.
        api.replace(name, &PostParams::default(), &lease)
            .await
            .map(drop)
    };
    match tokio::time::timeout(CALL_TIMEOUT, released).await {
        Ok(Ok(())) => tracing::info!(lease = name, "leader lease released"),
        Ok(Err(error)) => tracing::warn!(%error, "cannot release the leader lease"),
        Err(_) => tracing::warn!("releasing the leader lease took too long"),
    }
}

/// This replica's identity: the pod name, else the host name, else the process id.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| format!("schism-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_only_after_a_whole_duration_without_renewal_by_our_clock() {
        let start = Instant::now();
        let other = spec("other", 100);
        let seen = Observed::update(None, &other, start);
        assert!(!may_hold(
            &other,
            "me",
            &seen,
            start + Duration::from_secs(14)
        ));
        assert!(may_hold(
            &other,
            "me",
            &seen,
            start + Duration::from_secs(15)
        ));
        // A renewal restarts the wait, whatever the timestamps say.
        let renewed = spec("other", 50);
        let seen = Observed::update(Some(seen), &renewed, start + Duration::from_secs(14));
        assert!(!may_hold(
            &renewed,
            "me",
            &seen,
            start + Duration::from_secs(20)
        ));
    }

    #[test]
    fn our_own_or_an_empty_lease_may_always_be_held() {
        let now = Instant::now();
        let mine = spec("me", 1);
        let seen = Observed::update(None, &mine, now);
        assert!(may_hold(&mine, "me", &seen, now));
        let empty = LeaseSpec::default();
        assert!(may_hold(
            &empty,
            "me",
            &Observed::update(None, &empty, now),
            now
        ));
    }
}
