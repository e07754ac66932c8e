//! Wallet backup files as a person picks them (any file at all): each is refused with a
//! reason, or read into a wallet whose key-derivation parameters are within bounds (the page
//! runs Argon2id with them next, so a doctored file must not ask for gigabytes or minutes),
//! and which writes back out as a backup that reads in again to the same wallet.
#![no_main]

use client_core::wallet::SealedWallet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(wallet) = SealedWallet::from_backup(&text) {
        assert!(
            wallet.kdf.check().is_ok(),
            "a backup with unsafe KDF parameters was read"
        );
        let again = SealedWallet::from_backup(&wallet.to_backup())
            .expect("a wallet's own backup reads back");
        assert_eq!(again.to_backup(), wallet.to_backup());
    }
});
