//! The page's persistent storage (wasm32 only): one IndexedDB database with two object stores.
//!
//! - `wallet`: the sealed wallet, as its backup-file JSON under the key `"main"`. Only the
//!   sealed form is ever written; the phrase and the key exist unencrypted only in the wasm
//!   memory of an unlocked page.
//! - `jobs`: the job history, one record per job under its id: the canonical encoding of a
//!   [`crate::job::history::JobRecord`] as bytes.
//! - `chain`: the light client's verified state per genesis (the canonical encoding of a
//!   [`crate::ledger::light::Trusted`], under the genesis hash), so that a reloaded page
//!   resumes from the latest header it verified and never accepts an older one.
//!
//! This is an I/O shell like `browser`: it moves bytes and strings in and out and leaves their
//! meaning (and their checking) to the pure core.

use idb::{Database, Factory, ObjectStoreParams, TransactionMode};
use wasm_bindgen::{JsCast, JsValue};

const DB_NAME: &str = "aqueduct";
const DB_VERSION: u32 = 2;
const WALLET_STORE: &str = "wallet";
const JOBS_STORE: &str = "jobs";
const CHAIN_STORE: &str = "chain";
const WALLET_KEY: &str = "main";

/// A storage failure, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("browser storage: {0}")]
pub struct StorageError(String);

fn err(context: &str) -> impl Fn(idb::Error) -> StorageError + '_ {
    move |e| StorageError(format!("{context}: {e}"))
}

/// An open connection to the page's database.
#[derive(Clone)]
pub struct Storage {
    db: std::rc::Rc<Database>,
}

impl Storage {
    /// Opens (creating or upgrading if needed) the database.
    pub async fn open() -> Result<Storage, StorageError> {
        let factory = Factory::new().map_err(err("IndexedDB is not available"))?;
        let mut request = factory
            .open(DB_NAME, Some(DB_VERSION))
            .map_err(err("opening the database"))?;
        request.on_upgrade_needed(|event| {
            use idb::DatabaseEvent;
            let Ok(db) = event.database() else { return };
            let names = db.store_names();
            for store in [WALLET_STORE, JOBS_STORE, CHAIN_STORE] {
                if !names.iter().any(|n| n == store) {
                    let _ = db.create_object_store(store, ObjectStoreParams::new());
                }
            }
        });
        let db = request.await.map_err(err("opening the database"))?;
        Ok(Storage {
            db: std::rc::Rc::new(db),
        })
    }

    async fn put(&self, store: &str, key: &str, value: &JsValue) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadWrite)
            .map_err(err("starting a write"))?;
        let object_store = tx.object_store(store).map_err(err("opening a store"))?;
        object_store
            .put(value, Some(&JsValue::from_str(key)))
            .map_err(err("writing"))?
            .await
            .map_err(err("writing"))?;
        let result = tx.commit().map_err(err("committing"))?.await;
        match result {
            Ok(r) if r.is_committed() => Ok(()),
            Ok(_) => Err(StorageError("the write was aborted".into())),
            Err(e) => Err(err("committing")(e)),
        }
    }

    async fn get(&self, store: &str, key: &str) -> Result<Option<JsValue>, StorageError> {
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadOnly)
            .map_err(err("starting a read"))?;
        let object_store = tx.object_store(store).map_err(err("opening a store"))?;
        object_store
            .get(JsValue::from_str(key))
            .map_err(err("reading"))?
            .await
            .map_err(err("reading"))
    }

    async fn delete(&self, store: &str, key: &str) -> Result<(), StorageError> {
        let tx = self
            .db
            .transaction(&[store], TransactionMode::ReadWrite)
            .map_err(err("starting a delete"))?;
        let object_store = tx.object_store(store).map_err(err("opening a store"))?;
        object_store
            .delete(JsValue::from_str(key))
            .map_err(err("deleting"))?
            .await
            .map_err(err("deleting"))?;
        tx.commit()
            .map_err(err("committing"))?
            .await
            .map_err(err("committing"))?;
        Ok(())
    }

    /// The stored sealed wallet (backup-file JSON), if there is one.
    pub async fn wallet(&self) -> Result<Option<String>, StorageError> {
        Ok(self
            .get(WALLET_STORE, WALLET_KEY)
            .await?
            .and_then(|v| v.as_string()))
    }

    pub async fn put_wallet(&self, sealed_json: &str) -> Result<(), StorageError> {
        self.put(WALLET_STORE, WALLET_KEY, &JsValue::from_str(sealed_json))
            .await
    }

    pub async fn delete_wallet(&self) -> Result<(), StorageError> {
        self.delete(WALLET_STORE, WALLET_KEY).await
    }

    /// Stores (or replaces) a job record.
    pub async fn put_job(&self, id: &str, record: &[u8]) -> Result<(), StorageError> {
        let bytes = js_sys::Uint8Array::from(record);
        self.put(JOBS_STORE, id, &bytes.into()).await
    }

    /// Every stored job record, in key order; the caller decodes and sorts them.
    pub async fn jobs(&self) -> Result<Vec<Vec<u8>>, StorageError> {
        let tx = self
            .db
            .transaction(&[JOBS_STORE], TransactionMode::ReadOnly)
            .map_err(err("starting a read"))?;
        let store = tx
            .object_store(JOBS_STORE)
            .map_err(err("opening a store"))?;
        let values = store
            .get_all(None, None)
            .map_err(err("reading"))?
            .await
            .map_err(err("reading"))?;
        Ok(values
            .into_iter()
            .filter_map(|v| v.dyn_into::<js_sys::Uint8Array>().ok().map(|a| a.to_vec()))
            .collect())
    }

    pub async fn delete_job(&self, id: &str) -> Result<(), StorageError> {
        self.delete(JOBS_STORE, id).await
    }

    /// Keeps the light client's state for the chain of genesis `genesis_hash`.
    pub async fn put_light_state(
        &self,
        genesis_hash: &str,
        state: &[u8],
    ) -> Result<(), StorageError> {
        let bytes = js_sys::Uint8Array::from(state);
        self.put(CHAIN_STORE, genesis_hash, &bytes.into()).await
    }

    /// The light client's saved state for the chain of genesis `genesis_hash`.
    pub async fn light_state(&self, genesis_hash: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .get(CHAIN_STORE, genesis_hash)
            .await?
            .and_then(|v| v.dyn_into::<js_sys::Uint8Array>().ok())
            .map(|a| a.to_vec()))
    }
}
