//! Where a local store lives: the logical store directory, the state directory, and an
//! optional chroot root under which both are stored on disk.

use std::path::{Path, PathBuf};

use firn_format::StoreDir;

/// How to open a local store.
#[derive(Clone, Debug)]
pub struct LocalStoreConfig {
    /// For a chroot store (`--store /some/root`): the directory that stands for `/`.
    pub root: Option<PathBuf>,
    /// The logical store directory (`NIX_STORE_DIR`, default `/nix/store`).
    pub store_dir: StoreDir,
    /// The logical state directory (`NIX_STATE_DIR`, default `/nix/var/nix`).
    pub state_dir: PathBuf,
    /// Open without writing anything (no directories created, no locks taken for writing).
    pub read_only: bool,
    /// fsync every file and directory of a new path before registering it.
    pub fsync_store_paths: bool,
    /// Hard-link identical files when adding paths (`auto-optimise-store`).
    pub auto_optimise: bool,
    /// The `ca-derivations` experimental feature: the `Realisations` tables are created on
    /// opening (as CppNix does with the feature on) and builds record realisations.
    pub ca_derivations: bool,
    /// The `impure-derivations` experimental feature: derivations with impure outputs can be
    /// read (and built).
    pub impure_derivations: bool,
}

impl Default for LocalStoreConfig {
    fn default() -> Self {
        LocalStoreConfig {
            root: None,
            store_dir: StoreDir::default(),
            state_dir: PathBuf::from("/nix/var/nix"),
            read_only: false,
            fsync_store_paths: false,
            auto_optimise: false,
            ca_derivations: false,
            impure_derivations: false,
        }
    }
}

/// The real (on-disk) locations of everything a local store uses.
#[derive(Clone, Debug)]
pub struct Layout {
    pub real_store_dir: PathBuf,
    pub state_dir: PathBuf,
    pub db_dir: PathBuf,
    pub db_file: PathBuf,
    pub schema_file: PathBuf,
    pub big_lock: PathBuf,
    pub reserved: PathBuf,
    pub gcroots_dir: PathBuf,
    pub profiles_dir: PathBuf,
    pub temproots_dir: PathBuf,
    pub gc_lock: PathBuf,
    pub gc_socket: PathBuf,
    pub links_dir: PathBuf,
}

/// `root` + an absolute logical path.
pub fn rooted(root: Option<&Path>, logical: &Path) -> PathBuf {
    match root {
        None => logical.to_path_buf(),
        Some(r) => r.join(logical.strip_prefix("/").unwrap_or(logical)),
    }
}

impl Layout {
    pub fn new(c: &LocalStoreConfig) -> Layout {
        let root = c.root.as_deref();
        let real_store_dir = rooted(root, Path::new(c.store_dir.as_str()));
        let state_dir = rooted(root, &c.state_dir);
        let db_dir = state_dir.join("db");
        Layout {
            links_dir: real_store_dir.join(".links"),
            real_store_dir,
            db_file: db_dir.join("db.sqlite"),
            schema_file: db_dir.join("schema"),
            big_lock: db_dir.join("big-lock"),
            reserved: db_dir.join("reserved"),
            db_dir,
            gcroots_dir: state_dir.join("gcroots"),
            profiles_dir: state_dir.join("profiles"),
            temproots_dir: state_dir.join("temproots"),
            gc_lock: state_dir.join("gc.lock"),
            gc_socket: state_dir.join("gc-socket").join("socket"),
            state_dir,
        }
    }
}

/// Where CppNix keeps the build log of `drv` under `log_dir`, in the order to look: the
/// bzip2-compressed `drvs/<first two characters of the base name>/<the rest>.bz2`, the same
/// uncompressed, and the old flat `<log dir>/<base name>`.
pub fn build_log_paths(log_dir: &Path, drv: &firn_format::StorePath) -> [PathBuf; 3] {
    let base = drv.base_name();
    let plain = log_dir.join("drvs").join(&base[..2]).join(&base[2..]);
    let mut bz = plain.clone().into_os_string();
    bz.push(".bz2");
    [PathBuf::from(bz), plain, log_dir.join(base)]
}
