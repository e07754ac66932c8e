//! The request envelope and its verification.
//!
//! Every request a customer sends is a `Signed<Request<T>>`: the body plus the network it is
//! meant for, a nonce, the time it was made and the time it stops being valid. A relay accepts
//! it only if all of these hold, checked in this order so that unauthenticated bytes never
//! reach the replay cache:
//!
//! 1. the signature verifies for the claimed signer;
//! 2. the network id is the relay's;
//! 3. it was not issued further in the future than the allowed clock skew;
//! 4. it has not expired;
//! 5. its lifetime (expiry − issue time) is within the maximum TTL;
//! 6. its (signer, nonce) pair has not been seen while an earlier copy could still be valid.
//!
//! Because lifetimes are capped (5), the replay guard only has to remember a nonce until its
//! request's expiry: after that, a replay fails check 4 anyway. The guard is bounded; when full
//! it refuses new requests rather than forgetting live nonces (forgetting would reopen replays).

use crate::identity::PublicKey;
use crate::signed::{Domain, SignatureInvalid, Signed};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeSet, HashMap, HashSet};

/// A request body wrapped with its validity conditions. It carries its body's domain tag.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Request<T> {
    pub network_id: String,
    pub nonce: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    pub body: T,
}

impl<T: Domain> Domain for Request<T> {
    const TAG: &'static str = T::TAG;
}

impl<T> Request<T> {
    /// A request issued at `now_ms` that stays valid for `ttl_ms`.
    pub fn new(network_id: &str, nonce: u64, now_ms: u64, ttl_ms: u64, body: T) -> Self {
        Request {
            network_id: network_id.to_owned(),
            nonce,
            issued_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            body,
        }
    }
}

/// What a relay accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPolicy {
    pub network_id: String,
    /// Longest lifetime a request may claim. Governed by the DAO later on.
    pub max_ttl_ms: u64,
    /// How far ahead of our clock a request's issue time may be.
    pub max_clock_skew_ms: u64,
}

/// Why a request was refused. Each check has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    SignatureInvalid(#[from] SignatureInvalid),
    #[error("request is for network {got:?}, this is {expected:?}")]
    WrongNetwork { expected: String, got: String },
    #[error(
        "request issued at {issued_at_ms} is more than {max_skew_ms} ms ahead of now ({now_ms})"
    )]
    IssuedInFuture {
        issued_at_ms: u64,
        now_ms: u64,
        max_skew_ms: u64,
    },
    #[error("request expired at {expires_at_ms}, now is {now_ms}")]
    Expired { expires_at_ms: u64, now_ms: u64 },
    #[error("request lifetime of {ttl_ms} ms exceeds the maximum of {max_ttl_ms} ms")]
    TtlTooLong { ttl_ms: u64, max_ttl_ms: u64 },
    #[error("nonce {nonce} of {signer} was already used")]
    Replayed { signer: PublicKey, nonce: u64 },
    #[error("too many requests in flight to track replays; try again shortly")]
    ReplayCacheFull,
    #[error("{limit} requests of this signer are still live; wait until some expire")]
    SignerFull { signer: PublicKey, limit: usize },
}

/// Remembers (signer, nonce) pairs until their requests expire: at most `capacity` in all and
/// `per_signer` of any one signer, so no signer can fill it for the others.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    capacity: usize,
    per_signer: usize,
    seen: HashSet<(PublicKey, u64)>,
    by_expiry: BTreeSet<(u64, PublicKey, u64)>,
    live: HashMap<PublicKey, usize>,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        Self::with_per_signer(capacity, capacity)
    }

    /// A guard holding at most `per_signer` live nonces of one signer.
    pub fn with_per_signer(capacity: usize, per_signer: usize) -> Self {
        ReplayGuard {
            capacity,
            per_signer,
            seen: HashSet::new(),
            by_expiry: BTreeSet::new(),
            live: HashMap::new(),
        }
    }

    /// Whether this signer's nonce is already taken (a replay), without taking it.
    pub fn has(&self, signer: &PublicKey, nonce: u64) -> bool {
        self.seen.contains(&(*signer, nonce))
    }

    /// Gives back a nonce taken by a request that then could not be served.
    pub fn give_back(&mut self, signer: &PublicKey, nonce: u64) {
        if self.seen.remove(&(*signer, nonce)) {
            self.by_expiry
                .retain(|(_, s, n)| !(s == signer && *n == nonce));
            self.release(signer);
        }
    }

    fn release(&mut self, signer: &PublicKey) {
        if let Some(count) = self.live.get_mut(signer) {
            *count -= 1;
            if *count == 0 {
                self.live.remove(signer);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets the nonces of requests that expired before `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        while let Some(&(expiry, signer, nonce)) = self.by_expiry.first() {
            if expiry >= now_ms {
                break;
            }
            self.by_expiry.pop_first();
            if self.seen.remove(&(signer, nonce)) {
                self.release(&signer);
            }
        }
    }

    /// Takes the nonce of a request that passed every other check (see [`authenticate`]):
    /// the last step, so a refused request never uses up a nonce or a place.
    pub fn take(
        &mut self,
        signer: PublicKey,
        nonce: u64,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<(), RequestError> {
        self.prune(now_ms);
        if self.seen.contains(&(signer, nonce)) {
            return Err(RequestError::Replayed { signer, nonce });
        }
        if self.seen.len() >= self.capacity {
            return Err(RequestError::ReplayCacheFull);
        }
        let live = self.live.get(&signer).copied().unwrap_or(0);
        if live >= self.per_signer {
            return Err(RequestError::SignerFull {
                signer,
                limit: self.per_signer,
            });
        }
        self.seen.insert((signer, nonce));
        self.by_expiry.insert((expires_at_ms, signer, nonce));
        self.live.insert(signer, live + 1);
        Ok(())
    }
}

/// A request that passed every check, with its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest<'a, T> {
    pub signer: PublicKey,
    pub request: &'a Request<T>,
}

/// Runs every check of the module docs, in order, and records the nonce when all pass.
pub fn verify_request<'a, T: Domain + BorshSerialize>(
    signed: &'a Signed<Request<T>>,
    policy: &RequestPolicy,
    now_ms: u64,
    replay: &mut ReplayGuard,
) -> Result<VerifiedRequest<'a, T>, RequestError> {
    let verified = authenticate(signed, policy, now_ms)?;
    replay.take(
        signed.signer,
        verified.request.nonce,
        verified.request.expires_at_ms,
        now_ms,
    )?;
    Ok(verified)
}

/// Every check of [`verify_request`] but the replay guard: signature, network, issue time,
/// expiry and lifetime. Cheap; what a server runs before any work the request asks for, taking
/// the nonce ([`ReplayGuard::take`]) only once everything else has passed.
pub fn authenticate<'a, T: Domain + BorshSerialize>(
    signed: &'a Signed<Request<T>>,
    policy: &RequestPolicy,
    now_ms: u64,
) -> Result<VerifiedRequest<'a, T>, RequestError> {
    let request = signed.verify()?;
    if request.network_id != policy.network_id {
        return Err(RequestError::WrongNetwork {
            expected: policy.network_id.clone(),
            got: request.network_id.clone(),
        });
    }
    if request.issued_at_ms > now_ms.saturating_add(policy.max_clock_skew_ms) {
        return Err(RequestError::IssuedInFuture {
            issued_at_ms: request.issued_at_ms,
            now_ms,
            max_skew_ms: policy.max_clock_skew_ms,
        });
    }
    if request.expires_at_ms < now_ms {
        return Err(RequestError::Expired {
            expires_at_ms: request.expires_at_ms,
            now_ms,
        });
    }
    let ttl_ms = request.expires_at_ms.saturating_sub(request.issued_at_ms);
    if ttl_ms > policy.max_ttl_ms {
        return Err(RequestError::TtlTooLong {
            ttl_ms,
            max_ttl_ms: policy.max_ttl_ms,
        });
    }
    Ok(VerifiedRequest {
        signer: signed.signer,
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
    struct Ask(u32);
    impl Domain for Ask {
        const TAG: &'static str = "aqueduct/test/ask";
    }

    const NOW: u64 = 1_000_000;

    fn policy() -> RequestPolicy {
        RequestPolicy {
            network_id: "aqueduct-test".into(),
            max_ttl_ms: 60_000,
            max_clock_skew_ms: 5_000,
        }
    }

    fn signed(req: Request<Ask>) -> Signed<Request<Ask>> {
        Signed::sign(&Keypair::from_seed(&[5; 32]), req)
    }

    fn good(nonce: u64) -> Request<Ask> {
        Request::new("aqueduct-test", nonce, NOW, 30_000, Ask(1))
    }

    fn check(req: &Signed<Request<Ask>>, guard: &mut ReplayGuard) -> Result<(), RequestError> {
        verify_request(req, &policy(), NOW, guard).map(|_| ())
    }

    #[test]
    fn accepts_a_good_request() {
        let mut guard = ReplayGuard::new(8);
        let req = signed(good(1));
        let verified = verify_request(&req, &policy(), NOW, &mut guard).expect("valid request");
        assert_eq!(verified.signer, Keypair::from_seed(&[5; 32]).public());
        assert_eq!(verified.request.body, Ask(1));
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let mut guard = ReplayGuard::new(8);

        let mut tampered = signed(good(1));
        tampered.body.body = Ask(2);
        assert!(matches!(
            check(&tampered, &mut guard),
            Err(RequestError::SignatureInvalid(_))
        ));

        let mut wrong_net = good(2);
        wrong_net.network_id = "elsewhere".into();
        assert_eq!(
            check(&signed(wrong_net), &mut guard),
            Err(RequestError::WrongNetwork {
                expected: "aqueduct-test".into(),
                got: "elsewhere".into()
            })
        );

        let future = Request::new("aqueduct-test", 3, NOW + 5_001, 1_000, Ask(1));
        assert!(matches!(
            check(&signed(future), &mut guard),
            Err(RequestError::IssuedInFuture { .. })
        ));
        // Within the skew is fine.
        let slightly_ahead = Request::new("aqueduct-test", 4, NOW + 5_000, 1_000, Ask(1));
        assert_eq!(check(&signed(slightly_ahead), &mut guard), Ok(()));

        let expired = Request::new("aqueduct-test", 5, NOW - 10_000, 9_999, Ask(1));
        assert_eq!(
            check(&signed(expired), &mut guard),
            Err(RequestError::Expired {
                expires_at_ms: NOW - 1,
                now_ms: NOW
            })
        );

        let too_long = Request::new("aqueduct-test", 6, NOW, 60_001, Ask(1));
        assert_eq!(
            check(&signed(too_long), &mut guard),
            Err(RequestError::TtlTooLong {
                ttl_ms: 60_001,
                max_ttl_ms: 60_000
            })
        );

        let once = signed(good(7));
        assert_eq!(check(&once, &mut guard), Ok(()));
        assert!(matches!(
            check(&once, &mut guard),
            Err(RequestError::Replayed { nonce: 7, .. })
        ));
    }

    #[test]
    fn failed_checks_do_not_burn_the_nonce() {
        let mut guard = ReplayGuard::new(8);
        let mut wrong_net = good(1);
        wrong_net.network_id = "elsewhere".into();
        assert!(check(&signed(wrong_net), &mut guard).is_err());
        assert!(guard.is_empty());
        assert_eq!(check(&signed(good(1)), &mut guard), Ok(()));
    }

    #[test]
    fn same_nonce_from_another_signer_is_not_a_replay() {
        let mut guard = ReplayGuard::new(8);
        assert_eq!(check(&signed(good(1)), &mut guard), Ok(()));
        let other = Signed::sign(&Keypair::from_seed(&[6; 32]), good(1));
        assert_eq!(check(&other, &mut guard), Ok(()));
    }

    #[test]
    fn the_guard_forgets_only_expired_nonces_and_is_bounded() {
        let mut guard = ReplayGuard::new(2);
        assert_eq!(check(&signed(good(1)), &mut guard), Ok(()));
        assert_eq!(check(&signed(good(2)), &mut guard), Ok(()));
        assert_eq!(
            check(&signed(good(3)), &mut guard),
            Err(RequestError::ReplayCacheFull)
        );
        // After both expire, room frees up; the old requests would fail as expired anyway.
        let later = NOW + 30_001;
        let fresh = signed(Request::new("aqueduct-test", 3, later, 1_000, Ask(1)));
        assert!(verify_request(&fresh, &policy(), later, &mut guard).is_ok());
        assert_eq!(guard.len(), 1);
        let replay_of_old = signed(good(1));
        assert!(matches!(
            verify_request(&replay_of_old, &policy(), later, &mut guard),
            Err(RequestError::Expired { .. })
        ));
    }

    #[test]
    fn one_signer_cannot_fill_the_guard_and_a_nonce_is_taken_only_when_asked() {
        let mut guard = ReplayGuard::with_per_signer(100, 2);
        let hostile = Keypair::from_seed(&[6; 32]);
        let from = |key: &Keypair, nonce| Signed::sign(key, good(nonce));
        assert_eq!(check(&from(&hostile, 1), &mut guard), Ok(()));
        assert_eq!(check(&from(&hostile, 2), &mut guard), Ok(()));
        assert!(matches!(
            check(&from(&hostile, 3), &mut guard),
            Err(RequestError::SignerFull { limit: 2, .. })
        ));
        // Another signer is still served.
        assert_eq!(check(&signed(good(1)), &mut guard), Ok(()));
        // Authenticating takes nothing; taking does, and a nonce given back is free again.
        let request = signed(good(7));
        let verified = authenticate(&request, &policy(), NOW).expect("authentic");
        assert!(!guard.has(&verified.signer, 7));
        guard
            .take(verified.signer, 7, verified.request.expires_at_ms, NOW)
            .expect("taken");
        assert!(guard.has(&verified.signer, 7));
        guard.give_back(&verified.signer, 7);
        assert!(!guard.has(&verified.signer, 7));
        assert_eq!(check(&request, &mut guard), Ok(()));
        assert_eq!(guard.len(), 4);
    }
}
