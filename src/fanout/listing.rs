//! `first_delivery = "list_first"`: when many users wait for their first delivery to one
//! target (an initial load), one listing of the target's accounts is their look-up, instead
//! of one look-up request each. A user whose key the listing lacks is created at once; one
//! whose key it holds is looked up alone and adopted as before.
//!
//! A listing stands for the target's accounts for a bounded time only: an account made
//! elsewhere after it was read is not in it. The worker reads one only when nothing of the
//! target is in flight, so no create of its own can land between two pages unseen; and each
//! key the listing answers for is claimed, so a second user with the same key, or a retry
//! after a create whose answer was lost, goes to the look-up request.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::targets::{Target, TargetError, TargetResult};

/// The keys of one target's accounts as a listing found them.
#[derive(Debug)]
pub(crate) struct Listing {
    /// When the first page was asked for (unix ms).
    taken_at: i64,
    max_age_ms: i64,
    /// Hashes of the keys listed and of those claimed since: a fraction of the memory of the
    /// keys themselves. Two keys sharing a hash only send a user to the look-up request,
    /// never to a create.
    keys: HashSet<u64>,
    /// Accounts the listing read with a key.
    listed: usize,
}

impl Listing {
    pub(crate) fn new(taken_at: i64, max_age: Duration) -> Listing {
        Listing {
            taken_at,
            max_age_ms: millis(max_age),
            keys: HashSet::new(),
            listed: 0,
        }
    }

    fn add(&mut self, key: &str) {
        self.keys.insert(hash(key));
        self.listed += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_fresh(&self, now: i64) -> bool {
        now.saturating_sub(self.taken_at) < self.max_age_ms
    }

    /// Whether the account with `key` is known to be missing: the listing is fresh and
    /// lacks the key. The key is then claimed, so this answer is given once.
    pub(crate) fn claim_missing(&mut self, key: &str, now: i64) -> bool {
        self.is_fresh(now) && self.keys.insert(hash(key))
    }
}

/// What a worker knows of its target's accounts for `list_first`.
#[derive(Debug, Default)]
pub(crate) enum Lookup {
    /// No listing read yet.
    #[default]
    Unread,
    Read(Listing),
    /// The last listing could not be read at `at` (unix ms): until `retry_from`, each user
    /// is looked up alone rather than the listing tried at every burst.
    Failed {
        at: i64,
        retry_from: i64,
    },
}

impl Lookup {
    /// A listing the target could not give at `now`: tried again after `max_age`, or sooner
    /// when the target only pushed back (throttling, an outage), after the wait it asked for
    /// or `RETRY_PUSHED_BACK`.
    pub(crate) fn failed(now: i64, err: &TargetError, max_age: Duration) -> Lookup {
        let wait = match err {
            TargetError::Retryable { retry_after, .. } => {
                retry_after.unwrap_or(RETRY_PUSHED_BACK).min(max_age)
            }
            TargetError::Rejected { .. } | TargetError::Unusable { .. } => max_age,
        };
        Lookup::Failed {
            at: now,
            retry_from: now.saturating_add(millis(wait)),
        }
    }

    /// Whether a listing may be read at `now`: none stands, and no failed one waits.
    pub(crate) fn wants_reading(&self, now: i64) -> bool {
        match self {
            Lookup::Unread => true,
            Lookup::Read(listing) => !listing.is_fresh(now),
            Lookup::Failed { retry_from, .. } => now >= *retry_from,
        }
    }

    /// What an operator sees of it (`GET /admin/targets`).
    pub(crate) fn status(&self) -> LookupStatus {
        match self {
            Lookup::Unread => LookupStatus::NotRead,
            Lookup::Read(listing) => LookupStatus::Read {
                read_at: listing.taken_at,
                accounts: listing.listed,
                fresh_until: listing.taken_at.saturating_add(listing.max_age_ms),
            },
            Lookup::Failed { at, retry_from } => LookupStatus::Failed {
                at: *at,
                retry_from: *retry_from,
            },
        }
    }

    /// `Listing::claim_missing` of the listing read, if one was.
    pub(crate) fn claim_missing(&mut self, key: &str, now: i64) -> bool {
        match self {
            Lookup::Read(listing) => listing.claim_missing(key, now),
            Lookup::Unread | Lookup::Failed { .. } => false,
        }
    }
}

/// A `list_first` target's listing as the admin API shows it (times in unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum LookupStatus {
    /// None read yet: too few new users have waited at once.
    NotRead,
    /// New users whose key is not among `accounts` are created without a look-up until
    /// `fresh_until`.
    Read {
        read_at: i64,
        accounts: usize,
        fresh_until: i64,
    },
    /// The target refused the listing; each new user is looked up alone until `retry_from`.
    Failed { at: i64, retry_from: i64 },
}

/// The wait before a listing the target pushed back on is tried again, when it named none.
const RETRY_PUSHED_BACK: Duration = Duration::from_secs(30);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn hash(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Reads every page of `target`'s accounts into a listing taken at `now`, logging its
/// progress. An account whose fields lack the key counts for nothing: its user, if any, is
/// looked up alone.
pub(crate) async fn read(
    target: &dyn Target,
    now: i64,
    max_age: Duration,
) -> TargetResult<Listing> {
    let began = Instant::now();
    let mut listing = Listing::new(now, max_age);
    let mut cursor: Option<String> = None;
    let mut pages = 0usize;
    loop {
        let page = target.list(cursor.as_deref()).await?;
        pages += 1;
        let read = page.accounts.len();
        for account in &page.accounts {
            if let Some(key) = target.lookup_key(&account.fields) {
                listing.add(&key);
            }
        }
        if pages.is_multiple_of(50) {
            tracing::info!(
                target_name = target.name(),
                pages,
                accounts = listing.len(),
                "reading the target's accounts"
            );
        }
        match page.next {
            Some(_) if read == 0 => {
                return Err(TargetError::unusable(format!(
                    "page {pages} of the listing was empty yet named a next one"
                )))
            }
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    tracing::info!(
        target_name = target.name(),
        pages,
        accounts = listing.len(),
        took_ms = began.elapsed().as_millis() as u64,
        max_age_secs = max_age.as_secs(),
        "read the target's accounts: users whose key is not among them are created without a look-up"
    );
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_listing_answers_missing_once_per_key_and_never_for_a_key_it_holds() {
        let mut listing = Listing::new(1_000, Duration::from_secs(60));
        listing.add("held@example.com");
        assert!(!listing.claim_missing("held@example.com", 1_000));
        assert!(listing.claim_missing("new@example.com", 1_000));
        // The create that answer led to may have made the account: a retry, or a second
        // user with the same key, is looked up.
        assert!(!listing.claim_missing("new@example.com", 1_001));
        assert_eq!(listing.len(), 2);
    }

    #[test]
    fn a_refused_listing_waits_its_age_and_a_pushed_back_one_the_wait_asked_for() {
        let age = Duration::from_secs(60);
        assert!(Lookup::Unread.wants_reading(0));
        let refused = TargetError::Rejected {
            status: 403,
            message: "not allowed".into(),
        };
        let mut failed = Lookup::failed(1_000, &refused, age);
        assert!(!failed.wants_reading(60_999));
        assert!(failed.wants_reading(61_000));
        assert!(!failed.claim_missing("new@example.com", 2_000));
        let throttled = |retry_after| TargetError::Retryable {
            status: Some(429),
            reason: "slow down".into(),
            retry_after,
        };
        let asked = Lookup::failed(1_000, &throttled(Some(Duration::from_secs(5))), age);
        assert!(!asked.wants_reading(5_999));
        assert!(asked.wants_reading(6_000));
        let unnamed = Lookup::failed(1_000, &throttled(None), age);
        assert!(!unnamed.wants_reading(30_999));
        assert!(unnamed.wants_reading(31_000));
        let too_long = Lookup::failed(1_000, &throttled(Some(Duration::from_secs(600))), age);
        assert!(
            too_long.wants_reading(61_000),
            "never past the listing's age"
        );
        let read = Lookup::Read(Listing::new(1_000, age));
        assert!(!read.wants_reading(60_999));
        assert!(read.wants_reading(61_000));
        // What the admin API shows of each.
        assert_eq!(Lookup::Unread.status(), LookupStatus::NotRead);
        assert_eq!(
            failed.status(),
            LookupStatus::Failed {
                at: 1_000,
                retry_from: 61_000
            }
        );
        assert_eq!(
            read.status(),
            LookupStatus::Read {
                read_at: 1_000,
                accounts: 0,
                fresh_until: 61_000
            }
        );
    }

    #[test]
    fn a_listing_past_its_age_answers_nothing() {
        let mut listing = Listing::new(1_000, Duration::from_secs(60));
        assert!(listing.is_fresh(60_999));
        assert!(!listing.is_fresh(61_000));
        assert!(!listing.claim_missing("new@example.com", 61_000));
        // Not claimed by the stale answer.
        assert_eq!(listing.len(), 0);
    }
}
