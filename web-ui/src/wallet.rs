//! The wallet as the pages see it: whether there is one, whether it is unlocked, and the
//! actions on it. The cryptography is `client_core::wallet`; storage is
//! `client_core::storage`; this module only sequences them and turns the results into signals.

use crate::kdf;
use crate::widgets::local_storage;
use client_core::browser;
use client_core::identity::Keypair;
use client_core::storage::Storage;
use client_core::wallet::{
    Entropy, IdleLock, KdfParams, SealRandomness, SealedWallet, Unlocked, WalletError,
};
use leptos::prelude::*;
use zeroize::Zeroizing;

/// Where the wallet stands.
#[derive(Debug, Clone, PartialEq)]
pub enum WalletStatus {
    /// Reading IndexedDB.
    Loading,
    /// No wallet in this browser yet.
    Empty,
    Locked {
        account: String,
    },
    Unlocked {
        account: String,
    },
    /// Storage cannot be used (private mode, a damaged record…): the reason.
    Unavailable(String),
}

impl WalletStatus {
    /// The word in `data-testid="wallet-state"`.
    pub fn label(&self) -> &'static str {
        match self {
            WalletStatus::Loading => "loading",
            WalletStatus::Empty => "none",
            WalletStatus::Locked { .. } => "locked",
            WalletStatus::Unlocked { .. } => "unlocked",
            WalletStatus::Unavailable(_) => "unavailable",
        }
    }

    pub fn account(&self) -> Option<String> {
        match self {
            WalletStatus::Locked { account } | WalletStatus::Unlocked { account } => {
                Some(account.clone())
            }
            _ => None,
        }
    }
}

const AUTOLOCK_KEY: &str = "aqueduct.autolock-minutes";

#[derive(Clone, Copy)]
pub struct WalletState {
    pub status: RwSignal<WalletStatus>,
    /// A long operation in progress (key derivation), in words.
    pub busy: RwSignal<Option<String>>,
    /// The last thing that went wrong, in words, shown where the action was.
    pub error: RwSignal<Option<String>>,
    /// Something that happened without the user asking (auto-lock), shown once.
    pub notice: RwSignal<Option<String>>,
    /// How the last unlock went: (milliseconds, parameters).
    pub last_unlock: RwSignal<Option<(f64, KdfParams)>>,
    pub autolock_min: RwSignal<u32>,
    sealed: StoredValue<Option<SealedWallet>>,
    unlocked: StoredValue<Option<Unlocked>>,
    idle: StoredValue<IdleLock>,
    storage: StoredValue<Option<Storage>, LocalStorage>,
}

fn minutes_ms(min: u32) -> f64 {
    f64::from(min) * 60_000.0
}

impl WalletState {
    /// Creates the state, reads the stored wallet and starts the idle lock.
    pub fn start() -> Self {
        let autolock = local_storage()
            .and_then(|s| s.get_item(AUTOLOCK_KEY).ok().flatten())
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|m| IdleLock::CHOICES_MIN.contains(m))
            .unwrap_or(IdleLock::DEFAULT_MIN);
        let state = WalletState {
            status: RwSignal::new(WalletStatus::Loading),
            busy: RwSignal::new(None),
            error: RwSignal::new(None),
            notice: RwSignal::new(None),
            last_unlock: RwSignal::new(None),
            autolock_min: RwSignal::new(autolock),
            sealed: StoredValue::new(None),
            unlocked: StoredValue::new(None),
            idle: StoredValue::new(IdleLock::new(minutes_ms(autolock), browser::now_ms())),
            storage: StoredValue::new_local(None),
        };
        leptos::task::spawn_local(async move {
            match Storage::open().await {
                Ok(storage) => {
                    state.storage.set_value(Some(storage.clone()));
                    let status = match storage.wallet().await {
                        Ok(None) => WalletStatus::Empty,
                        Ok(Some(text)) => match SealedWallet::from_backup(&text) {
                            Ok(sealed) => {
                                let account = sealed.account_id();
                                state.sealed.set_value(Some(sealed));
                                WalletStatus::Locked { account }
                            }
                            Err(e) => WalletStatus::Unavailable(format!(
                                "the wallet stored in this browser cannot be read ({e}); restore it from its recovery phrase or a backup file"
                            )),
                        },
                        Err(e) => WalletStatus::Unavailable(e.to_string()),
                    };
                    state.status.set(status);
                }
                Err(e) => state.status.set(WalletStatus::Unavailable(e.to_string())),
            }
        });
        // Any key press or pointer press counts as activity.
        let touch = move || state.idle.update_value(|i| i.touch(browser::now_ms()));
        let _ = window_event_listener(leptos::ev::keydown, move |_| touch());
        let _ = window_event_listener(leptos::ev::pointerdown, move |_| touch());
        leptos::task::spawn_local(async move {
            loop {
                browser::pause(1_000).await;
                let due = state.idle.with_value(|i| i.due(browser::now_ms()));
                if due && state.unlocked.with_value(Option::is_some) {
                    state.lock();
                    state.notice.set(Some(format!(
                        "Locked after {} min without activity.",
                        state.autolock_min.get_untracked()
                    )));
                }
            }
        });
        state
    }

    /// The account key, while unlocked. Signing happens in the core with this value; it is
    /// never handed to JavaScript.
    pub fn keypair(&self) -> Option<Keypair> {
        self.unlocked
            .with_value(|u| u.as_ref().map(|u| u.keypair.clone()))
    }

    pub fn set_autolock(&self, minutes: u32) {
        self.autolock_min.set(minutes);
        self.idle
            .set_value(IdleLock::new(minutes_ms(minutes), browser::now_ms()));
        if let Some(s) = local_storage() {
            let _ = s.set_item(AUTOLOCK_KEY, &minutes.to_string());
        }
    }

    /// Milliseconds until the idle lock, while unlocked.
    pub fn lock_in_ms(&self) -> f64 {
        self.idle.with_value(|i| i.remaining_ms(browser::now_ms()))
    }

    fn storage(&self) -> Result<Storage, String> {
        self.storage
            .get_value()
            .ok_or_else(|| "browser storage is not open yet".to_string())
    }

    fn became_unlocked(&self, sealed: SealedWallet, unlocked: Unlocked) {
        let account = sealed.account_id();
        self.sealed.set_value(Some(sealed));
        self.unlocked.set_value(Some(unlocked));
        self.idle.set_value(IdleLock::new(
            minutes_ms(self.autolock_min.get_untracked()),
            browser::now_ms(),
        ));
        self.error.set(None);
        self.notice.set(None);
        self.status.set(WalletStatus::Unlocked { account });
    }

    /// Derives the wallet key (Argon2id, about a second; in a worker, see [`kdf`]) while the
    /// page shows `message`.
    async fn derive_key(
        &self,
        message: String,
        kdf: KdfParams,
        password: &str,
        salt: [u8; 16],
    ) -> Result<Zeroizing<[u8; 32]>, WalletError> {
        self.error.set(None);
        self.busy.set(Some(message));
        // Two short pauses: one for Leptos to update the DOM, one for the browser to paint.
        browser::pause(0).await;
        browser::pause(16).await;
        let out = kdf::derive(kdf, password, salt).await;
        self.busy.set(None);
        out
    }

    fn derive_message(kdf: &KdfParams, what: &str) -> String {
        format!(
            "{what}: deriving the key from your password (Argon2id, {} MiB, {} passes)…",
            kdf.memory_kib / 1024,
            kdf.iterations
        )
    }

    /// Seals `entropy` under `password`, stores it and unlocks.
    pub async fn save_new(&self, entropy: Entropy, password: String) -> Result<(), String> {
        let randomness = match (browser::random_bytes::<16>(), browser::random_bytes::<24>()) {
            (Ok(salt), Ok(nonce)) => SealRandomness { salt, nonce },
            (Err(e), _) | (_, Err(e)) => return Err(e.to_string()),
        };
        let kdf = KdfParams::DEFAULT;
        SealedWallet::check_password(&password).map_err(|e| e.to_string())?;
        let key = self
            .derive_key(
                Self::derive_message(&kdf, "Encrypting"),
                kdf,
                &password,
                randomness.salt,
            )
            .await
            .map_err(|e| e.to_string())?;
        let sealed = SealedWallet::seal_with_key(&entropy, &key, kdf, randomness)
            .map_err(|e| e.to_string())?;
        let storage = self.storage()?;
        storage
            .put_wallet(&sealed.to_backup())
            .await
            .map_err(|e| e.to_string())?;
        let keypair = entropy.keypair();
        self.became_unlocked(sealed, Unlocked { entropy, keypair });
        Ok(())
    }

    /// Unlocks the stored wallet.
    pub async fn unlock(&self, password: String) -> Result<(), WalletError> {
        let Some(sealed) = self.sealed.get_value() else {
            return Err(WalletError::BackupNotRecognised {
                reason: "there is no wallet in this browser".into(),
            });
        };
        let started = browser::now_ms();
        let opened = self
            .derive_key(
                Self::derive_message(&sealed.kdf, "Unlocking"),
                sealed.kdf,
                &password,
                sealed.salt,
            )
            .await
            .and_then(|key| sealed.open_with_key(&key));
        let took = browser::now_ms() - started;
        match opened {
            Ok(unlocked) => {
                browser::measure("aqueduct:unlock", started, started + took);
                self.last_unlock.set(Some((took, sealed.kdf)));
                self.became_unlocked(sealed, unlocked);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a backup file, checks the password against it, stores it and unlocks.
    pub async fn import(&self, text: String, password: String) -> Result<(), WalletError> {
        let sealed = SealedWallet::from_backup(&text)?;
        let key = self
            .derive_key(
                Self::derive_message(&sealed.kdf, "Opening the backup"),
                sealed.kdf,
                &password,
                sealed.salt,
            )
            .await?;
        let opened = sealed.open_with_key(&key)?;
        let storage = self
            .storage()
            .map_err(|reason| WalletError::BackupNotRecognised { reason })?;
        storage.put_wallet(&sealed.to_backup()).await.map_err(|e| {
            WalletError::BackupNotRecognised {
                reason: e.to_string(),
            }
        })?;
        self.became_unlocked(sealed, opened);
        Ok(())
    }

    /// Forgets the key in memory; the sealed wallet stays stored.
    pub fn lock(&self) {
        self.unlocked.set_value(None);
        if let Some(sealed) = self.sealed.get_value() {
            self.status.set(WalletStatus::Locked {
                account: sealed.account_id(),
            });
        }
    }

    /// The backup file's text.
    pub fn backup(&self) -> Option<String> {
        self.sealed
            .with_value(|s| s.as_ref().map(SealedWallet::to_backup))
    }

    /// The recovery phrase, while unlocked.
    pub fn phrase(&self) -> Option<String> {
        self.unlocked
            .with_value(|u| u.as_ref().map(|u| u.entropy.phrase().to_string()))
    }

    /// Deletes the stored wallet from this browser.
    pub async fn delete(&self) -> Result<(), String> {
        let storage = self.storage()?;
        storage.delete_wallet().await.map_err(|e| e.to_string())?;
        self.unlocked.set_value(None);
        self.sealed.set_value(None);
        self.status.set(WalletStatus::Empty);
        Ok(())
    }
}
