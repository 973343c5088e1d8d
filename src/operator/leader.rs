//! Leader election with a `coordination.k8s.io/v1` Lease, so two controller replicas never run
//! experiments twice: one holds the lease and renews it; the other waits for it to expire.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// May `identity` take or keep a lease with this spec at `now`? (Pure.)
pub fn may_hold(spec: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match &spec.renew_time {
        Some(MicroTime(renewed)) => *renewed + duration < now,
        None => true,
    }
}

/// One attempt to take or renew the lease; true when this process holds it afterwards.
pub async fn try_hold(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let seconds = duration.as_secs() as i32;
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
            if !may_hold(spec, identity, now) {
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

/// Waits until this process holds the lease, then keeps renewing it in the background; the
/// returned future resolves when leadership is lost (the caller should then stop).
pub async fn lead(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let duration = Duration::from_secs(15);
    loop {
        match try_hold(&api, name, identity, duration).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::info!(lease = name, identity, "leading");
    let (name, identity) = (name.to_owned(), identity.to_owned());
    tokio::spawn(async move {
        let mut failures = 0;
        loop {
            tokio::time::sleep(duration / 3).await;
            match try_hold(&api, &name, &identity, duration).await {
                Ok(true) => failures = 0,
                Ok(false) => return,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    // Past two missed renewals the lease may have expired; stop leading.
                    if failures >= 2 {
                        return;
                    }
                }
            }
        }
    })
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
    fn a_live_lease_of_another_replica_is_respected_and_an_expired_one_taken() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert!(!may_hold(&spec("other", 990), "me", now));
        assert!(may_hold(&spec("other", 980), "me", now));
        assert!(may_hold(&spec("me", 999), "me", now));
        assert!(may_hold(&LeaseSpec::default(), "me", now));
    }
}
