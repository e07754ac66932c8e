//! The relay's data directory: its identity key and its WebRTC certificate.
//!
//! Both are created on first start and reused afterwards, so the relay keeps its peer id and
//! its `/certhash/` multiaddr across restarts (browsers that know the address can come back).
//! Files are written to a temporary name and renamed into place, so a crash mid-write never
//! leaves half a key. A file that exists but cannot be read is an error, never silently
//! replaced: that would change the relay's identity behind its operator's back.

use anyhow::{Context, bail};
use client_core::identity::Keypair;
use client_core::ledger::Genesis;
use libp2p_webrtc::tokio::Certificate;
use std::fs;
use std::io::Write;
use std::path::Path;

const IDENTITY_FILE: &str = "identity.key";
const CERT_FILE: &str = "webrtc-cert.pem";

/// The relay's long-lived secrets.
pub struct RelayKeys {
    pub keypair: Keypair,
    pub certificate: Certificate,
}

impl RelayKeys {
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let keypair = load_or_create_identity(dir)?;
        let certificate = load_or_create_certificate(dir)?;
        Ok(RelayKeys {
            keypair,
            certificate,
        })
    }
}

fn load_or_create_identity(dir: &Path) -> anyhow::Result<Keypair> {
    let path = dir.join(IDENTITY_FILE);
    if path.exists() {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading the identity key {}", path.display()))?;
        let seed = hex::decode(text.trim()).with_context(|| {
            format!(
                "the identity key {} is not hex; restore it from a backup or move it away to make a new identity",
                path.display()
            )
        })?;
        return Keypair::try_from_seed_slice(&seed)
            .with_context(|| format!("the identity key {} is damaged", path.display()));
    }
    let seed: [u8; 32] = rand::random();
    write_atomic(&path, format!("{}\n", hex::encode(seed)).as_bytes())?;
    Ok(Keypair::from_seed(&seed))
}

fn load_or_create_certificate(dir: &Path) -> anyhow::Result<Certificate> {
    let path = dir.join(CERT_FILE);
    if path.exists() {
        let pem = fs::read_to_string(&path)
            .with_context(|| format!("reading the WebRTC certificate {}", path.display()))?;
        return Certificate::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "the WebRTC certificate {} is damaged ({e}); move it away to make a new one \
                 (browsers will then need the relay's new address)",
                path.display()
            )
        });
    }
    let certificate = Certificate::generate(&mut rand::rng())
        .map_err(|e| anyhow::anyhow!("generating a WebRTC certificate: {e}"))?;
    write_atomic(&path, certificate.serialize_pem().as_bytes())?;
    Ok(certificate)
}

const GENESIS_FILE: &str = "genesis.json";

/// The genesis to run: the file given, or the data directory's own development genesis
/// (created on first start: this relay the only validator, a faucet). A genesis whose network
/// id differs from `network_id` is refused, so jobs and the ledger never disagree.
pub fn load_or_create_genesis(
    dir: &Path,
    given: Option<&Path>,
    network_id: &str,
    keypair: &Keypair,
) -> anyhow::Result<Genesis> {
    let (path, create) = match given {
        Some(path) => (path.to_path_buf(), false),
        None => (dir.join(GENESIS_FILE), true),
    };
    let genesis = if path.exists() || !create {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading the genesis {}", path.display()))?;
        Genesis::from_json(&text).with_context(|| {
            if create && text.contains("\"params\"") && !text.contains("\"gov\"") {
                // A dev chain this relay started before the ledger had governance.
                format!(
                    "the genesis {} was written by an earlier version, before governance; its \
                     chain cannot be carried over. Remove {} and ledger.redb from {} to start a \
                     new development chain (the relay's identity and certificate are kept)",
                    path.display(),
                    GENESIS_FILE,
                    dir.display()
                )
            } else {
                format!("the genesis {}", path.display())
            }
        })?
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        let genesis = Genesis::dev(network_id, keypair.public(), now);
        write_atomic(&path, genesis.to_json().as_bytes())?;
        genesis
    };
    if genesis.network_id != network_id {
        bail!(
            "the genesis {} is for network {:?} but the relay runs network {:?} (--network-id)",
            path.display(),
            genesis.network_id,
            network_id
        );
    }
    Ok(genesis)
}

/// Writes `bytes` to `path` readable by the owner only, atomically (temporary file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let Some(name) = path.file_name() else {
        bail!("{} is not a file path", path.display());
    };
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("aqueduct-datadir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn keys_persist_across_loads() {
        let dir = temp_dir("persist");
        let first = RelayKeys::load_or_create(&dir).expect("create");
        let second = RelayKeys::load_or_create(&dir).expect("load");
        assert_eq!(first.keypair.public(), second.keypair.public());
        assert_eq!(
            first.certificate.fingerprint(),
            second.certificate.fingerprint()
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_files_are_reported_not_replaced() {
        let dir = temp_dir("damaged");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(IDENTITY_FILE), "not hex at all").expect("write");
        let err = RelayKeys::load_or_create(&dir).err().expect("must fail");
        assert!(format!("{err:#}").contains("not hex"), "{err:#}");
        assert_eq!(
            fs::read_to_string(dir.join(IDENTITY_FILE)).expect("still there"),
            "not hex at all"
        );

        fs::write(dir.join(IDENTITY_FILE), hex::encode([1u8; 32])).expect("write");
        fs::write(dir.join(CERT_FILE), "-----BEGIN nonsense-----").expect("write");
        let err = RelayKeys::load_or_create(&dir).err().expect("must fail");
        assert!(format!("{err:#}").contains("certificate"), "{err:#}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dev_genesis_from_before_governance_says_what_to_do() {
        let dir = temp_dir("old-genesis");
        fs::create_dir_all(&dir).expect("mkdir");
        let key = Keypair::from_seed(&[5; 32]);
        let created = load_or_create_genesis(&dir, None, "n", &key).expect("created");
        assert_eq!(
            load_or_create_genesis(&dir, None, "n", &key).expect("loaded"),
            created
        );
        // The same file as an earlier version wrote it: no governance parameters.
        let mut json: serde_json::Value = serde_json::from_str(&created.to_json()).expect("json");
        let params = json["params"].as_object_mut().expect("params");
        params.remove("gov");
        params.remove("slash_fraction_bps");
        fs::write(dir.join(GENESIS_FILE), json.to_string()).expect("write");
        let err = load_or_create_genesis(&dir, None, "n", &key).expect_err("refused");
        assert!(format!("{err:#}").contains("before governance"), "{err:#}");
        let _ = fs::remove_dir_all(&dir);
    }
}
