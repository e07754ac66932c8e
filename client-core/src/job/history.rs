//! The customer's job history: what was run, where, what came back and how it was verified.
//!
//! Records are stored by the browser (IndexedDB) in their canonical encoding and read back with
//! [`JobRecord::decode`]. A reopened record can be re-checked without the network:
//! [`JobRecord::recheck`] verifies the stored receipt's signature and that the stored output is
//! the one the receipt names, so a damaged or edited record does not pass for a verified one.

use crate::encoding::{DecodeError, decode, encode};
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::job::Receipt;
use crate::job::exec::MAX_OUTPUT_BYTES;
use crate::job::verify::Strength;
use crate::signed::Signed;
use borsh::{BorshDeserialize, BorshSerialize};

/// Records kept per browser; older ones are pruned when a new one is stored.
pub const MAX_RECORDS: usize = 200;
/// A stored record may not be larger than this (output plus input plus receipt).
pub const MAX_RECORD_BYTES: usize = MAX_OUTPUT_BYTES + crate::job::MAX_INPUT_BYTES + 64 * 1024;

/// How strongly a stored result was verified.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum Level {
    /// Re-executed in full in the browser.
    Reexecuted { fuel: u64, checkpoints: u64 },
    /// `checked` of `segments` segments re-run; `caught` is the probability (in parts per
    /// million) that a relay faking 5% of the work would have been caught.
    Sampled {
        segments: u64,
        checked: u64,
        caught_ppm: u32,
    },
    /// Run by two providers with different stake owners (the record's relay, and `second`)
    /// and refereed: the same commitment and output (`liar` is `None`), or a bisection of
    /// `rounds` question rounds that proved `liar` false at a segment, leaving the other's
    /// result. Correct unless both providers lied.
    Refereed {
        second: String,
        segments: u64,
        rounds: u32,
        liar: Option<(String, u64)>,
        /// Time this browser spent refereeing (questions and one segment re-run).
        referee_ms: u64,
    },
}

impl Level {
    pub fn of(strength: &Strength) -> Self {
        match strength {
            Strength::Reexecuted { fuel, checkpoints } => Level::Reexecuted {
                fuel: *fuel,
                checkpoints: *checkpoints,
            },
            Strength::Sampled {
                segments,
                checked,
                detection,
            } => {
                let caught = detection
                    .iter()
                    .find(|(f, _)| (*f - 0.05).abs() < 1e-9)
                    .or(detection.first())
                    .map_or(0.0, |(_, p)| *p);
                Level::Sampled {
                    segments: *segments,
                    checked: checked.len() as u64,
                    caught_ppm: (caught.clamp(0.0, 1.0) * 1e6).round() as u32,
                }
            }
        }
    }

    /// A short label for tables.
    pub fn label(&self) -> String {
        match self {
            Level::Reexecuted { .. } => "re-executed".into(),
            Level::Sampled {
                checked, segments, ..
            } => format!("sampled {checked}/{segments}"),
            Level::Refereed { liar: None, .. } => "refereed: two providers agree".into(),
            Level::Refereed {
                liar: Some((_, segment)),
                ..
            } => format!("refereed: a liar caught at segment {segment}"),
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum Outcome {
    Verified {
        output: Vec<u8>,
        receipt: Box<Signed<Receipt>>,
        /// The checks as they were shown when the result was verified.
        checks: Vec<String>,
        level: Level,
        /// The relay's own (unsigned) account of its execution time.
        run_ms: u64,
        /// Time this browser spent verifying.
        verify_ms: u64,
    },
    /// No verified result: which step failed and why.
    Failed {
        check: String,
        reason: String,
    },
    Cancelled,
}

/// One job as the history keeps it: what was submitted, and how it ended.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct JobRecord {
    pub base: RecordBase,
    pub outcome: Outcome,
}

/// Why a stored record does not stand up any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecheckError {
    #[error("the stored receipt's signature is not valid")]
    Signature,
    #[error("the stored output is not the output the receipt names")]
    Output,
    #[error("the stored receipt is for another job, module, input or customer")]
    Mismatch,
}

impl JobRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, MAX_RECORD_BYTES)
    }

    /// The id under which it is stored.
    pub fn key(&self) -> String {
        self.base.job.to_string()
    }

    /// The short status shown in the history table.
    pub fn status(&self) -> &'static str {
        match self.outcome {
            // Sampling is evidence of work, not of a correct output: said apart.
            Outcome::Verified {
                level: Level::Sampled { .. },
                ..
            } => "sampled",
            Outcome::Verified {
                level: Level::Refereed { .. },
                ..
            } => "refereed",
            Outcome::Verified { .. } => "verified",
            Outcome::Failed { .. } => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Fuel the relay reported in its receipt (verified results only).
    pub fn fuel_used(&self) -> Option<u64> {
        match &self.outcome {
            Outcome::Verified { receipt, .. } => Some(receipt.body.fuel_used),
            _ => None,
        }
    }

    /// Re-checks a stored verified record offline: the receipt's signature, and that it names
    /// this job, module, input, customer and output.
    pub fn recheck(&self) -> Result<(), RecheckError> {
        let Outcome::Verified {
            output, receipt, ..
        } = &self.outcome
        else {
            return Ok(());
        };
        let body = receipt.verify().map_err(|_| RecheckError::Signature)?;
        let base = &self.base;
        if body.job != base.job
            || body.module != base.module
            || body.input != Hash::of(&base.input)
            || body.customer != base.account
        {
            return Err(RecheckError::Mismatch);
        }
        if body.output != Hash::of(output) {
            return Err(RecheckError::Output);
        }
        Ok(())
    }
}

/// The fields of a record known when the job is submitted.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct RecordBase {
    pub job: Hash,
    pub account: PublicKey,
    /// Unix time of the submission, ms.
    pub submitted_ms: u64,
    /// The example's name or the uploaded file's name.
    pub name: String,
    pub module: Hash,
    pub input: Vec<u8>,
    pub fuel_limit: u64,
    /// The relay's peer id.
    pub relay: String,
    /// What the job's voucher paid the relay, if it charged.
    pub paid: Option<u64>,
}

impl RecordBase {
    pub fn ended(self, outcome: Outcome) -> JobRecord {
        JobRecord {
            base: self,
            outcome,
        }
    }
}

/// Sorts records newest first and returns the keys of those beyond `keep`.
pub fn newest_first(records: &mut [JobRecord], keep: usize) -> Vec<String> {
    records.sort_by(|a, b| {
        (b.base.submitted_ms.cmp(&a.base.submitted_ms)).then(a.base.job.cmp(&b.base.job))
    });
    records.iter().skip(keep).map(JobRecord::key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn record(relay: &Keypair, customer: &Keypair, at: u64) -> JobRecord {
        let input = b"input".to_vec();
        let output = b"output".to_vec();
        let job = Hash::of(&at.to_le_bytes());
        let module = Hash::of(b"module");
        let receipt = Signed::sign(
            relay,
            Receipt {
                profile: 1,
                job,
                customer: customer.public(),
                module,
                input: Hash::of(&input),
                output: Hash::of(&output),
                fuel_used: 1234,
                commitment: None,
                payment: None,
                completed_at_ms: at,
            },
        );
        JobRecord {
            base: RecordBase {
                job,
                account: customer.public(),
                submitted_ms: at,
                name: "primes".into(),
                module,
                input,
                fuel_limit: 10_000,
                relay: relay.peer_id().to_string(),
                paid: Some(20),
            },
            outcome: Outcome::Verified {
                output,
                receipt: Box::new(receipt),
                checks: vec!["receipt signature".into()],
                level: Level::Reexecuted {
                    fuel: 1234,
                    checkpoints: 0,
                },
                run_ms: 5,
                verify_ms: 7,
            },
        }
    }

    #[test]
    fn round_trip_and_recheck() {
        let (relay, customer) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let r = record(&relay, &customer, 10);
        let back = JobRecord::decode(&r.encode()).expect("decode");
        assert_eq!(back, r);
        assert_eq!(back.recheck(), Ok(()));
        assert_eq!(back.status(), "verified");
        assert_eq!(back.fuel_used(), Some(1234));
        // A sampled result is not called verified.
        let mut sampled = back;
        if let Outcome::Verified { level, .. } = &mut sampled.outcome {
            *level = Level::Sampled {
                segments: 1000,
                checked: 86,
                caught_ppm: 990_000,
            };
        }
        assert_eq!(sampled.status(), "sampled");
    }

    #[test]
    fn recheck_catches_edits() {
        let (relay, customer) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let mut edited = record(&relay, &customer, 10);
        if let Outcome::Verified { output, .. } = &mut edited.outcome {
            output[0] ^= 1;
        }
        assert_eq!(edited.recheck(), Err(RecheckError::Output));

        let mut forged = record(&relay, &customer, 10);
        if let Outcome::Verified { receipt, .. } = &mut forged.outcome {
            receipt.body.fuel_used = 1;
        }
        assert_eq!(forged.recheck(), Err(RecheckError::Signature));

        let mut other_input = record(&relay, &customer, 10);
        other_input.base.input = b"other".to_vec();
        assert_eq!(other_input.recheck(), Err(RecheckError::Mismatch));
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let (relay, customer) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let mut records: Vec<JobRecord> = [5, 1, 9, 3]
            .iter()
            .map(|at| record(&relay, &customer, *at))
            .collect();
        let dropped = newest_first(&mut records, 2);
        let order: Vec<u64> = records.iter().map(|r| r.base.submitted_ms).collect();
        assert_eq!(order, vec![9, 5, 3, 1]);
        assert_eq!(dropped, vec![records[2].key(), records[3].key()]);
    }

    #[test]
    fn sampled_level_keeps_the_five_percent_odds() {
        let strength = Strength::Sampled {
            segments: 1000,
            checked: vec![1, 2, 3],
            detection: vec![(0.01, 0.5), (0.05, 0.991), (0.1, 0.9999)],
        };
        assert_eq!(
            Level::of(&strength),
            Level::Sampled {
                segments: 1000,
                checked: 3,
                caught_ppm: 991_000
            }
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(JobRecord::decode(b"\x01\x02").is_err());
    }
}
