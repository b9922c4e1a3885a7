//! Shared by the integration tests of ferry-repo.

use ferry_repo::{InitOptions, Repository};

/// A new repository in `dir/repo` (cache in `dir/cache`), with a fast key derivation: tests
/// need no protection against guessing.
pub fn scratch_repo(dir: &std::path::Path, passphrase: &[u8], opts: InitOptions) -> Repository {
    let store = ferry_store::open(dir.join("repo").to_str().unwrap()).unwrap();
    let opts = InitOptions { kdf: ferry_crypto::keyfile::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..opts };
    Repository::init(store, passphrase, &opts, &dir.join("cache")).unwrap()
}
